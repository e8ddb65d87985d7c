"""What shipping a workflow's code to the nodes costs (toilray/deployment.py), on a 3-node cluster.

The nodes are network namespaces with their own addresses (tests/netns_cluster.py, which needs
root). The workflow is benchmarks/workflows/fanout.py, run from a copy of its directory (the
script and the modules beside it) with a package of ``--payload-mb`` MB of incompressible data
added, in a directory every node sees. Each run is timed end to end twice over: shipped (the
default) and not shipped (``--disableAutoDeployment``), alternating. Every run gets a payload
of its own, so Ray's package cache (keyed by content) never spares an upload.

    .venv/bin/python benchmarks/code_shipping.py --jobs 30 --payload-mb 4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the cluster helper lives with the tests that use it

from netns_cluster import NetnsCluster, netns_cluster  # noqa: E402

WORKFLOWS = REPO / "benchmarks" / "workflows"


def code_directory(root: Path, payload_mb: int) -> Path:
    """A copy of the workflow scripts' directory, with a package of random data files."""
    code = root / f"code-{time.monotonic_ns()}"
    shutil.copytree(WORKFLOWS, code, ignore=shutil.ignore_patterns("__pycache__"))
    package = code / "payload"
    package.mkdir()
    (package / "__init__.py").write_text('"""Data that travels with the workflow\'s code."""\n')
    for index in range(payload_mb):
        (package / f"part{index}.bin").write_bytes(os.urandom(1 << 20))
    return code


def measure(cluster: NetnsCluster, jobs: int, payload_mb: int, shipped: bool) -> dict[str, object]:
    code = code_directory(cluster.root, payload_mb)
    argv = [sys.executable, str(code / "fanout.py"), f"file:{code}/store", "--jobs", str(jobs),
            "--rayAddress", cluster.address, "--logLevel", "WARNING"]
    if not shipped:
        argv.append("--disableAutoDeployment")
    started = time.monotonic()
    done = cluster.run(cluster.head, argv, timeout=900)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"the fan-out failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH_RESULT"))
    shutil.rmtree(code)
    return {"shipped": shipped, "jobs": jobs, "payload_mb": payload_mb, "end_to_end_s": round(took, 2),
            "in_workflow_s": round(float(json.loads(line.split(" ", 1)[1])["wall_s"]), 2),
            "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--payload-mb", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with netns_cluster([{}] * 3) as cluster:
        for _ in range(options.repeats):
            for shipped in (True, False):
                print(json.dumps(measure(cluster, options.jobs, options.payload_mb, shipped)), flush=True)


if __name__ == "__main__":
    main()
