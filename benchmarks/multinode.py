"""Fan-out throughput on a 3-node Ray cluster against one node with the same CPUs, on this machine.

The nodes are network namespaces with their own addresses (tests/netns_cluster.py, which needs
root); all of them share this machine's cores, so the figure shows what running over several
nodes costs or gains in the leader and Ray, not what more machines would add.

    .venv/bin/python benchmarks/multinode.py --jobs 10000 --cpus 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the cluster helper lives with the tests that use it

from netns_cluster import netns_cluster  # noqa: E402

FANOUT = REPO / "benchmarks" / "workflows" / "fanout.py"


def measure(nodes: int, cpus_per_node: int, jobs: int) -> dict[str, object]:
    with netns_cluster([{}] * nodes, cpus=cpus_per_node) as cluster, tempfile.TemporaryDirectory() as work:
        done = cluster.run(cluster.head, [sys.executable, str(FANOUT), f"file:{work}/store", "--jobs", str(jobs),
                                          "--rayAddress", cluster.address, "--logLevel", "WARNING"], timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"the fan-out failed:\n{done.stderr[-3000:]}")
        line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH_RESULT"))
        result = json.loads(line.split(" ", 1)[1])
        wall = float(result["wall_s"])
        return {"nodes": nodes, "cpus_per_node": cpus_per_node, "jobs": jobs, "wall_s": round(wall, 2),
                "jobs_per_s": round((jobs + 2) / wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--cpus", type=int, default=3, help="CPUs in all: one node of them, or one per node")
    options = parser.parse_args()
    for nodes, per_node in ((1, options.cpus), (options.cpus, 1)):
        print(json.dumps(measure(nodes, per_node, options.jobs)), flush=True)


if __name__ == "__main__":
    main()
