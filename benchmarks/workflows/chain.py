"""Chain: N jobs, each the follow-on of the one before, each passing its count plus one to the
next. The last job writes the final count to ``--out``.

(The count travels as an argument, not as ``job.rv()`` of the job adding the follow-on: Toil
may chain a follow-on into its predecessor's worker, where that promise is not yet resolved.)
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from driver import parse_options, run_workflow
from engine import Job


def step(job: Any, index: int, length: int, previous: int, out: str) -> int:
    value = previous + 1
    if index + 1 < length:
        job.addFollowOnJobFn(step, index + 1, length, value, out)
    else:
        with open(out, "w") as handle:
            handle.write(str(value))
    return value


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, required=True, help="Length of the chain.")
    parser.add_argument("--out", required=True, help="File the last job writes the final count to.")


def read_count(out: str) -> int:
    with open(out) as handle:
        return int(handle.read())


def main() -> None:
    options = parse_options(add_arguments)
    run_workflow(
        options,
        lambda _toil: Job.wrapJobFn(step, 0, options.jobs, 0, options.out),
        lambda _toil, _value: read_count(options.out),
    )


if __name__ == "__main__":
    main()
