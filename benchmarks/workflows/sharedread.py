"""Many readers of one file: the leader imports ``--input``, then ``--readers`` jobs on this
node each read it with readGlobalFile; a follow-on collects their sizes and times."""

from __future__ import annotations

import os
import time
from argparse import ArgumentParser
from typing import Any

from driver import parse_options, run_workflow
from engine import Job


def read_one(job: Any, file_id: Any) -> tuple[int, float]:
    started = time.perf_counter()
    path = job.fileStore.readGlobalFile(file_id)
    read_s = time.perf_counter() - started
    return os.path.getsize(path), read_s


def summarise(reads: list[tuple[int, float]]) -> dict[str, Any]:
    times = [read_s for _, read_s in reads]
    return {
        "readers": len(reads),
        "bytes": sum(size for size, _ in reads),
        "max_read_s": max(times),
        "sum_read_s": sum(times),
    }


def fan(job: Any, file_id: Any, readers: int) -> Any:
    children = [job.addChildJobFn(read_one, file_id) for _ in range(readers)]
    return job.addFollowOnFn(summarise, [child.rv() for child in children]).rv()


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="The local file every reader reads.")
    parser.add_argument("--readers", type=int, required=True, help="Number of reading jobs.")


def main() -> None:
    options = parse_options(add_arguments)

    def make_root(toil: Any) -> Any:
        file_id = toil.importFile("file://" + os.path.abspath(options.input))
        return Job.wrapJobFn(fan, file_id, options.readers)

    run_workflow(options, make_root)


if __name__ == "__main__":
    main()
