"""Merge sort of a text file, after the sort example in the Toil manual.

``down`` splits its input at a line boundary near the middle until a piece is at most
``--split`` bytes, sorts such pieces in memory, and hands the two sorted halves to an ``up``
follow-on that merges them. The sorted file is exported to ``--out``.
"""

from __future__ import annotations

import heapq
import os
from argparse import ArgumentParser
from typing import Any

from driver import parse_options, run_workflow
from engine import Job


def mid_point(path: str, start: int, end: int) -> int:
    """Offset of the last byte of the line holding the middle of [start, end)."""
    with open(path, "rb") as handle:
        handle.seek(start + (end - start) // 2)
        handle.readline()
        return handle.tell() - 1


def copy_range(path: str, start: int, end: int, target: str) -> None:
    with open(path, "rb") as source, open(target, "wb") as out:
        source.seek(start)
        remaining = end - start
        while remaining > 0:
            block = source.read(min(remaining, 1 << 20))
            if not block:
                break
            out.write(block)
            remaining -= len(block)


def down(job: Any, input_id: Any, split: int) -> Any:
    path = job.fileStore.readGlobalFile(input_id)
    length = os.path.getsize(path)
    if length <= split:
        with open(path) as handle:
            lines = handle.readlines()
        lines.sort()
        sorted_path = job.fileStore.getLocalTempFile()
        with open(sorted_path, "w") as handle:
            handle.writelines(lines)
        return job.fileStore.writeGlobalFile(sorted_path)
    middle = mid_point(path, 0, length)
    first = job.fileStore.getLocalTempFile()
    second = job.fileStore.getLocalTempFile()
    copy_range(path, 0, middle + 1, first)
    copy_range(path, middle + 1, length, second)
    left = job.addChildJobFn(down, job.fileStore.writeGlobalFile(first), split)
    right = job.addChildJobFn(down, job.fileStore.writeGlobalFile(second), split)
    return job.addFollowOnJobFn(up, left.rv(), right.rv()).rv()


def up(job: Any, left_id: Any, right_id: Any) -> Any:
    merged = job.fileStore.getLocalTempFile()
    with (
        job.fileStore.readGlobalFileStream(left_id, encoding="utf-8") as left,
        job.fileStore.readGlobalFileStream(right_id, encoding="utf-8") as right,
        open(merged, "w") as out,
    ):
        out.writelines(heapq.merge(left, right))
    return job.fileStore.writeGlobalFile(merged)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="The file to sort.")
    parser.add_argument("--out", required=True, help="Where to write the sorted file.")
    parser.add_argument(
        "--split", type=int, default=10000, help="Pieces of at most this many bytes are sorted in one job."
    )


def main() -> None:
    options = parse_options(add_arguments)

    def make_root(toil: Any) -> Any:
        input_id = toil.importFile("file://" + os.path.abspath(options.input))
        return Job.wrapJobFn(down, input_id, options.split)

    def finish(toil: Any, sorted_id: Any) -> int:
        toil.exportFile(sorted_id, "file://" + os.path.abspath(options.out))
        return os.path.getsize(options.out)

    run_workflow(options, make_root, finish)


if __name__ == "__main__":
    main()
