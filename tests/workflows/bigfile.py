"""Test workflow: one job writes a large file with writeGlobalFile, another reads it back.

The data is pseudo-random (seeded) and generated block by block, so no process ever holds
the whole file. Each job reports the SHA-256 it saw and how far its process's resident memory
grew above what it was when the job started (the peak is reset then: a worker process that ran
other jobs before keeps their peak otherwise); the leader prints them as JSON after ``RESULT``,
with its own peak.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any

from toilray.common import Toil
from toilray.job import Job

BLOCK = 8 << 20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise LookupError(field)


def start_growth() -> int:
    """Reset this process's peak resident memory to its current size; return that size (KiB)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _status_kib("VmRSS")


def growth_kib(start: int) -> int:
    """How far the resident memory peaked above ``start`` since ``start_growth``."""
    return _status_kib("VmHWM") - start


def write_big(job: Job, size: int) -> dict[str, Any]:
    start = start_growth()
    path = job.fileStore.getLocalTempFile()
    digest = hashlib.sha256()
    generator = random.Random(20261125)
    with open(path, "wb") as out:
        for _ in range(size // BLOCK):
            block = generator.randbytes(BLOCK)
            digest.update(block)
            out.write(block)
    file_id = job.fileStore.writeGlobalFile(path)
    os.unlink(path)  # the job store has its copy; free the disk for the reader's
    return {"file_id": file_id, "sha256": digest.hexdigest(), "writer_growth_kib": growth_kib(start)}


def read_big(job: Job, written: dict[str, Any]) -> dict[str, Any]:
    start = start_growth()
    path = job.fileStore.readGlobalFile(written["file_id"])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return {
        "intact": digest.hexdigest() == written["sha256"],
        "size": os.path.getsize(path),
        "writer_growth_kib": written["writer_growth_kib"],
        "reader_growth_kib": growth_kib(start),
    }


def root(job: Job, size: int) -> object:
    write = job.addChildJobFn(write_big, size, disk=2 * size)
    return write.addFollowOnJobFn(read_big, write.rv(), disk=2 * size).rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--size", type=int, default=1 << 30)
    options = parser.parse_args()
    with Toil(options) as toil:
        result = toil.start(Job.wrapJobFn(root, options.size))
    # VmHWM is this program's own peak: getrusage's ru_maxrss survives exec, so a leader
    # forked from a large parent (a long pytest session) would report the parent's size.
    result["leader_rss_kib"] = _status_kib("VmHWM")
    print(f"RESULT {json.dumps(result)}")
