"""Fan-out: a root with N trivial children whose results a follow-on sums through promises."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from driver import parse_options, run_workflow
from engine import Job


def leaf(i: int) -> int:
    return i


def total(values: list[int]) -> int:
    return sum(values)


def root(job: Any, n: int) -> Any:
    children = [job.addChildFn(leaf, i) for i in range(n)]
    return job.addFollowOnFn(total, [child.rv() for child in children]).rv()


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, required=True, help="Number of children.")


def main() -> None:
    options = parse_options(add_arguments)
    run_workflow(options, lambda _toil: Job.wrapJobFn(root, options.jobs))


if __name__ == "__main__":
    main()
