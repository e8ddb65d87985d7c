"""Runs a job function from a sibling module of the package and one from __main__."""

from __future__ import annotations

from flowpkg.helpers import shout
from toilray.common import Toil
from toilray.job import Job, Promise


def exclaim(text: str) -> str:
    return text + "!"


def begin(job: Job) -> Promise:
    loud = job.addChildFn(shout, "package")
    return job.addFollowOnFn(exclaim, loud.rv()).rv()


if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    with Toil(options) as toil:
        print(f"RESULT {toil.start(Job.wrapJobFn(begin))}")
