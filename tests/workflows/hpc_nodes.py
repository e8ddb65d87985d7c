"""Test workflow for HPC allocations: a root with N children, each returning the Ray node it ran
on (after a short pause, so that the jobs spread over the nodes); a follow-on writes how many jobs
ran on each node and the Ray cluster's cores, as JSON, to --out. With --fail, one child fails instead."""

from __future__ import annotations

import collections
import json
import time

import ray

from toilray.common import Toil
from toilray.job import Job


def child(index: int, seconds: float, fail: bool) -> str:
    if fail and index == 0:
        raise RuntimeError("this child fails on purpose")
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()


def count(nodes: list[str], out: str) -> None:
    with open(out, "w") as handle:
        json.dump({"nodes": collections.Counter(nodes), "cpus": ray.cluster_resources().get("CPU")}, handle)


def root(job: Job, n: int, seconds: float, fail: bool, out: str) -> None:
    nodes = [job.addChildFn(child, i, seconds, fail, cores=0.5, memory="50M").rv() for i in range(n)]
    job.addFollowOnFn(count, nodes, out, cores=0.1, memory="50M")


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    options.retryCount = 0
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(root, options.n, options.seconds, options.fail, options.out, cores=0.1,
                                 memory="50M"))
