"""Test workflow: a checkpoint job whose grandchild fails until a counter file reaches 3.

With --retryCount 1 the grandchild's two attempts both fail, so the checkpoint reruns its
whole subtree; in the rerun the grandchild's first attempt succeeds. Every run of every job
is recorded in --countDir.
"""

from __future__ import annotations

import os
import uuid

from toilray.common import Toil
from toilray.job import Job


def record(count_dir: str, name: str) -> None:
    open(os.path.join(count_dir, f"{name}-{uuid.uuid4().hex}"), "w").close()


def grandchild(count_dir: str, counter: str) -> str:
    record(count_dir, "grandchild")
    with open(counter, "a") as handle:
        handle.write("x")
    attempts = os.path.getsize(counter)
    if attempts <= 2:
        raise RuntimeError(f"grandchild attempt {attempts} fails on purpose")
    return f"grandchild succeeded on attempt {attempts}"


def child(job: Job, count_dir: str, counter: str) -> object:
    record(count_dir, "child")
    return job.addChildFn(grandchild, count_dir, counter).rv()


def checkpointed(job: Job, count_dir: str, counter: str) -> object:
    record(count_dir, "checkpoint")
    return job.addChildJobFn(child, count_dir, counter).rv()


def root(job: Job, count_dir: str, counter: str) -> object:
    return job.addChildJobFn(checkpointed, count_dir, counter, checkpoint=True).rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--countDir", required=True)
    parser.add_argument("--counter", required=True)
    options = parser.parse_args()
    with Toil(options) as toil:
        if options.restart:
            result = toil.restart()
        else:
            result = toil.start(Job.wrapJobFn(root, options.countDir, options.counter))
    print(f"RESULT {result}")
