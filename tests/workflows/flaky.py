"""Test workflow: ten independent jobs and one that raises; a follow-on adds up their values.

The test edits ``flaky`` (the line marked BUG) before ``--restart`` to check that fixed
code is what runs, and that finished jobs do not run again.
"""

from __future__ import annotations

import os
import uuid

from toilray.common import Toil
from toilray.job import Job


def record(count_dir: str, name: str) -> None:
    open(os.path.join(count_dir, f"{name}-{uuid.uuid4().hex}"), "w").close()


def work(index: int, count_dir: str) -> int:
    record(count_dir, f"work{index}")
    return index


def flaky(count_dir: str) -> int:
    record(count_dir, "flaky")
    print("flaky is about to fail")
    raise RuntimeError("boom from flaky")  # BUG
    return 100


def gather(values: list[int]) -> int:
    return sum(values)


def root(job: Job, count_dir: str) -> object:
    record(count_dir, "root")
    values = [job.addChildFn(work, i, count_dir).rv() for i in range(10)]
    values.append(job.addChildFn(flaky, count_dir).rv())
    return job.addFollowOnFn(gather, values).rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--countDir", required=True)
    options = parser.parse_args()
    with Toil(options) as toil:
        if options.restart:
            result = toil.restart()
        else:
            result = toil.start(Job.wrapJobFn(root, options.countDir))
    print(f"RESULT {result}")
