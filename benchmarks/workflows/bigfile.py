"""One big global file: a job writes ``--input`` into the job store with writeGlobalFile, and
its follow-on reads it back with readGlobalFile. Both time their file-store call."""

from __future__ import annotations

import os
import time
from argparse import ArgumentParser
from typing import Any

from driver import parse_options, run_workflow
from engine import Job


def write(job: Any, source: str) -> Any:
    started = time.perf_counter()
    file_id = job.fileStore.writeGlobalFile(source)
    write_s = time.perf_counter() - started
    return job.addFollowOnJobFn(read, file_id, write_s).rv()


def read(job: Any, file_id: Any, write_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    path = job.fileStore.readGlobalFile(file_id)
    read_s = time.perf_counter() - started
    return {"write_s": write_s, "read_s": read_s, "bytes": os.path.getsize(path)}


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="The local file to store and read back.")


def main() -> None:
    options = parse_options(add_arguments)
    run_workflow(options, lambda _toil: Job.wrapJobFn(write, os.path.abspath(options.input)))


if __name__ == "__main__":
    main()
