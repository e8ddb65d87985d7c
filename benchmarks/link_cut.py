"""From a worker's link cut mid-job (no TCP reset) to the rerun of its job and the end of the run.

A cluster of a head and ``--runs`` workers in network namespaces (tests/netns_cluster.py, which
needs root, with its silent-node settings); each run is tests/workflows/spread.py's gated fan-out
of 6 jobs, as in test_a_node_cut_off_mid_job_has_its_job_rerun_elsewhere, and cuts the link of
a worker of its own once one of the jobs runs there. Printed per run: when the leader logged the
job's rerun and when the run ended, in seconds after the cut. ``--ray-health-checks`` puts
Ray's default health checks back (the keepalive settings stay), to compare.

    .venv/bin/python benchmarks/link_cut.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the cluster helper and the workflow's arguments live there

from netns_cluster import NetnsCluster, Node, netns_cluster  # noqa: E402
from test_multinode import executions, expected_total, spread_args  # noqa: E402

JOBS = 6
RAY_HEALTH_CHECKS = {"RAY_health_check_period_ms": "3000", "RAY_health_check_timeout_ms": "10000",
                     "RAY_health_check_failure_threshold": "5"}


def cut_mid_job(cluster: NetnsCluster, victim: Node, work: Path) -> dict[str, object]:
    count_dir = work / "ran"
    count_dir.mkdir(parents=True)
    gate, log = work / "gate", work / "leader.log"
    leader = cluster.popen(cluster.head, spread_args(cluster, f"file:{work / 'store'}", count_dir, JOBS, "--gate",
                                                     str(gate), "--reach", cluster.address), log)
    while not any(victim.ip in where for where in executions(count_dir).values()):
        if leader.poll() is not None:
            raise SystemExit(f"the run ended before a job ran on {victim.ip}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    cluster.cut_link(victim)
    cut = time.monotonic()
    gate.touch()
    rerun: float | None = None
    while leader.poll() is None:
        if rerun is None and "lost its node" in log.read_text():
            rerun = time.monotonic() - cut
        time.sleep(0.2)
    ended = time.monotonic() - cut
    if leader.returncode != 0 or f"RESULT {expected_total(JOBS)}" not in log.read_text():
        raise SystemExit(f"the run failed:\n{log.read_text()[-3000:]}")
    return {"node": victim.ip, "rerun_logged_s": None if rerun is None else round(rerun, 1),
            "ended_s": round(ended, 1), "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ray-health-checks", action="store_true", help="Ray's default health checks")
    options = parser.parse_args()
    extra_env = RAY_HEALTH_CHECKS if options.ray_health_checks else None
    with netns_cluster([{"on_demand": 1}] * (options.runs + 1), extra_env=extra_env) as cluster:
        for run, victim in enumerate(cluster.workers):
            print(json.dumps(cut_mid_job(cluster, victim, cluster.root / f"run{run}")), flush=True)


if __name__ == "__main__":
    main()
