"""A store full of unfinished jobs: the root adds ``--jobs`` children that each append a line
to ``--marks`` and then wait until ``--gate`` exists. The harness kills the leader once the
first child has started, leaving the children pending in the job store."""

from __future__ import annotations

import os
import time
from argparse import ArgumentParser
from typing import Any

from driver import parse_options, run_workflow
from engine import Job


def blocked(job: Any, marks: str, gate: str) -> None:
    with open(marks, "a") as handle:
        handle.write(f"{job.jobStoreID}\n")
    while not os.path.exists(gate):
        time.sleep(0.5)


def root(job: Any, n: int, marks: str, gate: str) -> None:
    for _ in range(n):
        job.addChildJobFn(blocked, marks, gate)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, required=True, help="Number of children.")
    parser.add_argument("--marks", required=True, help="File the children append to when they start.")
    parser.add_argument("--gate", required=True, help="The children wait until this file exists.")


def main() -> None:
    options = parse_options(add_arguments)
    marks, gate = os.path.abspath(options.marks), os.path.abspath(options.gate)
    run_workflow(options, lambda _toil: Job.wrapJobFn(root, options.jobs, marks, gate))


if __name__ == "__main__":
    main()
