"""Test workflow: a root job whose one child asks for ``--cores`` cores (to test what happens
when no current node of the cluster has that many)."""

from __future__ import annotations

from toilray.common import Toil
from toilray.job import Job


def big(job: Job) -> str:
    return "big job ran"


def root(job: Job, cores: float) -> object:
    # No memory requirement: the fake autoscaler's node types have none to offer.
    return job.addChildJobFn(big, cores=cores, memory=0, disk="10M").rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--cores", type=float, required=True)
    options = parser.parse_args()
    with Toil(options) as toil:
        result = toil.start(Job.wrapJobFn(root, options.cores, cores=1, memory="50M", disk="10M"))
    print(f"RESULT {result}")
