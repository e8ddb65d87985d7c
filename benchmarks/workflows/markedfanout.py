"""Fan-out whose children leave a trace: each child sleeps ``--sleep`` seconds, then appends
"<jobStoreID> <index>" to ``--marks``, then returns its index; a follow-on sums them.

The harness kills the leader part way through and counts, from the marks, which children
ran again after ``--restart``.
"""

from __future__ import annotations

import os
import time
from argparse import ArgumentParser
from typing import Any

from driver import parse_options, run_workflow
from engine import Job


def leaf(job: Any, index: int, marks: str, sleep: float) -> int:
    if sleep > 0:
        time.sleep(sleep)
    line = f"{job.jobStoreID} {index}\n".encode()
    fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return index


def total(values: list[int]) -> int:
    return sum(values)


def root(job: Any, n: int, marks: str, sleep: float) -> Any:
    children = [job.addChildJobFn(leaf, i, marks, sleep) for i in range(n)]
    return job.addFollowOnFn(total, [child.rv() for child in children]).rv()


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=0, help="Number of children (unused with --restart).")
    parser.add_argument("--marks", default="", help="File the children append their marks to.")
    parser.add_argument("--sleep", type=float, default=0.0, help="Seconds each child sleeps.")


def main() -> None:
    options = parse_options(add_arguments)
    marks = os.path.abspath(options.marks)
    run_workflow(options, lambda _toil: Job.wrapJobFn(root, options.jobs, marks, options.sleep))


if __name__ == "__main__":
    main()
