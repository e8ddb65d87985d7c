"""Jobs that read one global file at the same instant, for the tests of the node cache.

They meet at a barrier between the jobs of a running workflow and the test that runs it, with
no polling. A job arriving at a phase writes the phase's name to a FIFO, then waits for a
shared ``flock`` on the phase's gate file, which the test holds exclusively. A thread in the
test reads the FIFO until every party has arrived, may then look at the node (all the jobs
are paused at the gate), and opens the gate by closing its lock: the waiting jobs all go on
at the same instant. Workers import this module by name (they get the leader's ``sys.path``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import select
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toilray.fileStores import FileID
from toilray.job import Job

_STOP = b"\x00"


def wait_at(directory: str, phase: str) -> None:
    """In a job: arrive at ``phase`` and wait until every party has arrived."""
    fifo = os.open(os.path.join(directory, "arrivals"), os.O_WRONLY | os.O_NONBLOCK)  # ENXIO if no test
    try:
        os.write(fifo, f"{phase}\n".encode())
    finally:
        os.close(fifo)
    gate = os.open(os.path.join(directory, f"gate-{phase}"), os.O_RDONLY)
    try:
        fcntl.flock(gate, fcntl.LOCK_SH)
    finally:
        os.close(gate)


class JobBarrier:
    """The test's side: ``parties`` jobs meet at each of ``phases``, in order.

    ``when_all_arrived(phase)`` runs while they all wait at the gate. Problems (a phase whose
    jobs did not all arrive within ``timeout`` seconds, an error of ``when_all_arrived``) are
    collected in ``errors``; whatever happens, every gate is open once the thread ends, so no
    job waits for ever.
    """

    def __init__(self, directory: Path, parties: int, phases: Sequence[str],
                 when_all_arrived: Callable[[str], None] | None = None, timeout: float = 300) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = str(directory)
        self.errors: list[str] = []
        self._parties = parties
        self._phases = list(phases)
        self._when_all_arrived = when_all_arrived
        self._timeout = timeout
        fifo = directory / "arrivals"
        os.mkfifo(fifo)
        # Read-write, so that the FIFO has a reader from now on and never reads EOF.
        self._fifo = os.open(fifo, os.O_RDWR)
        self._gates: dict[str, int] = {}
        for phase in self._phases:
            gate = os.open(directory / f"gate-{phase}", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(gate, fcntl.LOCK_EX)
            self._gates[phase] = gate
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> JobBarrier:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        os.write(self._fifo, _STOP + b"\n")  # ends the thread if it still waits for arrivals
        self._thread.join()
        os.close(self._fifo)

    def _run(self) -> None:
        pending = b""
        try:
            for phase in self._phases:
                arrived = 0
                while arrived < self._parties:
                    if not select.select([self._fifo], [], [], self._timeout)[0]:
                        self.errors.append(f"{phase}: {arrived} of {self._parties} jobs arrived "
                                           f"within {self._timeout} s")
                        return
                    *lines, pending = (pending + os.read(self._fifo, 4096)).split(b"\n")
                    for line in lines:
                        if line == _STOP:
                            return
                        if line.decode() != phase:
                            self.errors.append(f"a job arrived at {line.decode()!r} while waiting for {phase!r}")
                        arrived += 1
                if self._when_all_arrived is not None:
                    self._when_all_arrived(phase)
                os.close(self._gates.pop(phase))
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            for gate in self._gates.values():
                os.close(gate)
            self._gates.clear()


def write_global(job: Job, data: bytes, name: str = "data") -> FileID:
    """Store ``data`` as a global file, keeping no local copy of it."""
    path = os.path.join(job.fileStore.getLocalTempDir(), name)
    with open(path, "wb") as handle:
        handle.write(data)
    file_id = job.fileStore.writeGlobalFile(path)
    os.unlink(path)
    return file_id


def read_together(job: Job, file_id: str, sync_dir: str, tag: str) -> dict[str, Any]:
    """A job that reads the file with ``readGlobalFile`` when all its fellow readers do (phase
    ``read-<tag>``), and holds it until they have all read it (``held-<tag>``): what the test
    sees of the node then is what they all hold at once. Returns what it was given."""
    wait_at(sync_dir, f"read-{tag}")
    path = job.fileStore.readGlobalFile(file_id)
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    wait_at(sync_dir, f"held-{tag}")
    info = os.stat(path)
    return {"inode": (info.st_dev, info.st_ino), "symlink": os.path.islink(path),
            "links": os.lstat(path).st_nlink, "sha256": digest}


def copies(directory: Path, size: int) -> dict[tuple[int, int], list[str]]:
    """The regular files of ``size`` bytes under ``directory`` (not symbolic links): their
    paths relative to it, by inode. One inode is one copy on disk."""
    found: dict[tuple[int, int], list[str]] = {}
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            info = path.lstat()
            if info.st_size == size:
                found.setdefault((info.st_dev, info.st_ino), []).append(str(path.relative_to(directory)))
    return found
