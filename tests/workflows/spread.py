"""Test workflow for multi-node clusters: N jobs that each write a global file, a follow-on
that reads them all back, and a few jobs that must not run on preemptible nodes.

Two services that must not run on preemptible nodes (not with ``--gate``) run while they do.
Every execution of a job leaves ``<countDir>/<jobStoreID>-<node address>-<uuid>``, so a test can
tell how often each job ran and where. With ``--gate PATH``, jobs wait for PATH to exist before
they finish (so a test can lose a node while jobs certainly run on it); with ``--reach
HOST:PORT`` too, they then wait until they can connect there (a node cut off from the cluster
never can, though it still sees the shared file system). ``--pieceMemory`` sets the memory the
N jobs ask for (so that only some nodes can hold them). Where a job runs comes from a module
beside the script (spread_node.py), which nodes import as the script's own code.
"""

from __future__ import annotations

import os
import time
import uuid

from spread_node import RecordedService, node_address, reachable

from toilray.common import Toil
from toilray.job import Job

_GATE_WAIT = 600.0


def _ran(job: Job, count_dir: str, gate: str | None, reach: str | None) -> None:
    open(os.path.join(count_dir, f"{job.jobStoreID}-{node_address()}-{uuid.uuid4().hex}"), "w").close()
    deadline = time.monotonic() + _GATE_WAIT
    while gate is not None and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.1)
    while reach is not None and not reachable(reach) and time.monotonic() < deadline:
        time.sleep(0.5)


def piece(job: Job, index: int, count_dir: str, gate: str | None, reach: str | None) -> object:
    _ran(job, count_dir, gate, reach)
    path = job.fileStore.getLocalTempFile()
    with open(path, "w") as handle:
        handle.write(f"{index * index}\n")
    return job.fileStore.writeGlobalFile(path)


def pinned(job: Job, count_dir: str, gate: str | None, reach: str | None) -> str:
    _ran(job, count_dir, gate, reach)
    return node_address()


def gather(job: Job, file_ids: list[object], pinned_at: list[str]) -> int:
    total = 0
    for file_id in file_ids:
        with open(job.fileStore.readGlobalFile(file_id)) as handle:
            total += int(handle.read())
    return total


def root(job: Job, n: int, pins: int, count_dir: str, gate: str | None, reach: str | None,
         piece_memory: str) -> object:
    for _ in range(2 if gate is None else 0):
        job.addService(RecordedService(count_dir, cores=0.1, memory="50M", disk="10M", preemptible=False))
    files = [job.addChildJobFn(piece, i, count_dir, gate, reach, cores=1, memory=piece_memory, disk="10M").rv()
             for i in range(n)]
    pinned_at = [job.addChildJobFn(pinned, count_dir, gate, reach, cores=1, memory="50M", disk="10M",
                                   preemptible=False).rv() for _ in range(pins)]
    return job.addFollowOnJobFn(gather, files, pinned_at, memory="50M", disk="10M").rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--pins", type=int, default=6)
    parser.add_argument("--countDir", required=True)
    parser.add_argument("--gate")
    parser.add_argument("--reach")
    parser.add_argument("--pieceMemory", default="50M", help="the memory each of the N jobs asks for")
    options = parser.parse_args()
    with Toil(options) as toil:
        result = toil.restart() if options.restart else toil.start(
            Job.wrapJobFn(root, options.n, options.pins, options.countDir, options.gate, options.reach,
                         options.pieceMemory, memory="50M", disk="10M"))
    print(f"RESULT {result}")
