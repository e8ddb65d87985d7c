"""Test workflow: one job writes a file; several follow-ons read the whole of it at once.

Prints ``RESULT N`` when all N readers saw the same content (``RESULT -1`` otherwise).
"""

from __future__ import annotations

import hashlib
import os

from toilray.common import Toil
from toilray.fileStores import FileID
from toilray.job import Job


def write(job: Job, size: int) -> FileID:
    path = job.fileStore.getLocalTempFile()
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
    return job.fileStore.writeGlobalFile(path)


def read(job: Job, file_id: FileID) -> str:
    with open(job.fileStore.readGlobalFile(file_id), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def agreeing(digests: list[str]) -> int:
    return len(digests) if len(set(digests)) == 1 else -1


def root(job: Job, size: int, readers: int) -> object:
    writer = job.addChildJobFn(write, size)
    digests = [writer.addFollowOnJobFn(read, writer.rv(), cores=0.5).rv() for _ in range(readers)]
    return job.addFollowOnFn(agreeing, digests).rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--size", type=int, default=8 << 20)
    parser.add_argument("--readers", type=int, default=8)
    options = parser.parse_args()
    with Toil(options) as toil:
        print(f"RESULT {toil.start(Job.wrapJobFn(root, options.size, options.readers))}")
