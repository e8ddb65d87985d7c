"""The node-local cache of global files: one read-only copy per file per node.

Jobs on a node that read the same global file share one cached copy instead of each
making their own. It is the only copy a node keeps, whatever the job store: a file of an
S3 or GCS store is downloaded straight into it (the object-store back end keeps no cache
of its own), so a file that many jobs on a node read is downloaded once per node, and
evicting it frees its disk. A file of a local (file:) store on the same file system is not
copied at all: the entry is a hard link to the store's own read-only inode, so a read costs a
few system calls whatever the file's size. Read-only must hold even for root, whom permission
bits do not stop: where the file system allows it the entry is marked immutable (``chattr
+i``; for a linked entry that seals the store's name too, and the store clears the mark only
to delete its name, sealing again what the cache still holds: ``toilray.lib.files.unlink_sealed``)
and jobs get symbolic links to it (an immutable inode cannot gain hard links); otherwise it
is mode 0444 and jobs get hard links. The cache lives in the workflow's node-local directory
and is removed with it when the workflow ends. A job may grow the cache only up to its own
disk requirement, evicting (least recently filled first) entries that no running job holds;
a file that still does not fit is given to the job as a private copy instead.

Many jobs on a node may read at once, so every step is safe between processes:

- One process fills an entry while holding that entry's exclusive lock (``flock`` on
  ``.locks/<entry>``); readers of the same file started at the same instant wait for it
  and then link to its copy, so a file is filled (downloaded) once, not once per reader.
- Space is reserved under a cache-wide lock (``.lock``, exclusive) that is held only while
  counting, evicting and reserving, and while a filled entry is published (renamed into
  place, made immutable, its reservation dropped): never while data is copied. A fill in
  progress counts at its final size (its reservation, ``.reserved/<entry>``), so that
  concurrent fills of different files cannot together overrun a job's limit. A reservation
  or partial fill (``.filling/<entry>``) whose entry lock nobody holds was left by a process
  that died mid-fill, and is removed.
- A reader records its use of an entry (``.refs/<entry>/<pid>-<token>``) under the same lock
  held shared, so an eviction never removes an entry a running job has been handed. Uses by
  processes that have exited do not count.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator

from toilray.lib.files import set_immutable
from toilray.lib.processes import pid_alive

# Beside the entries (whose names start with a hex digest, never a dot):
_LOCK = ".lock"  # the cache-wide lock
_LOCKS = ".locks"  # one lock file per entry, held while the entry is filled
_RESERVED = ".reserved"  # the size a fill in progress will take
_FILLING = ".filling"  # fills in progress, renamed into place when whole
_REFS = ".refs"  # uses of each entry by running jobs


def remove_cache(directory: str) -> None:
    """Delete a cache directory, clearing immutable attributes first."""
    if not os.path.isdir(directory):
        return
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            set_immutable(entry.path, False)
    shutil.rmtree(directory, ignore_errors=True)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class NodeCache:
    """One node's cached files (see the module docstring for how processes share them)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._token = f"{os.getpid()}-{uuid.uuid4().hex}"
        self._refs: list[str] = []

    def _name(self, file_id: str) -> str:
        digest = hashlib.sha1(file_id.encode()).hexdigest()[:24]
        return f"{digest}-{os.path.basename(file_id)}"

    def _aux(self, kind: str, name: str) -> str:
        return os.path.join(self.directory, kind, name)

    @contextlib.contextmanager
    def _locked(self, path: str, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # releases the lock

    def place(self, file_id: str, destination: str, executable: bool, size: int, limit: int,
              fill: Callable[[str], None]) -> bool:
        """Put a read-only view of the file at ``destination`` and return True, filling the cache
        if needed; return False (placing nothing) when the file cannot fit in ``limit`` bytes of
        cache even after evicting the entries no running job holds."""
        for kind in (_LOCKS, _RESERVED, _FILLING, _REFS):
            os.makedirs(os.path.join(self.directory, kind), exist_ok=True)
        name = self._name(file_id)
        cached = os.path.join(self.directory, name)
        ref = self._aux(_REFS, os.path.join(name, self._token))
        with self._locked(os.path.join(self.directory, _LOCK), fcntl.LOCK_SH):
            # Recorded before the entry is used, and never during an eviction: once the entry
            # exists with this use recorded, no one evicts it under us.
            os.makedirs(os.path.dirname(ref), exist_ok=True)
            open(ref, "w").close()
            self._refs.append(ref)
            if self._link(cached, destination):
                return True
        with self._locked(self._aux(_LOCKS, name)):
            if not os.path.exists(cached) and not self._fill(name, cached, executable, size, limit, fill):
                self._refs.remove(ref)
                _unlink(ref)
                return False
        return self._link(cached, destination)

    @staticmethod
    def _link(cached: str, destination: str) -> bool:
        try:
            os.link(cached, destination)
        except FileNotFoundError:
            return False
        except OSError:
            # An immutable file cannot gain hard links (or the cache is on another device).
            os.symlink(cached, destination)
        return True

    def _fill(self, name: str, cached: str, executable: bool, size: int, limit: int,
              fill: Callable[[str], None]) -> bool:
        """Fill the entry (its lock held) if there is room for it; False if there is none."""
        reservation, filling = self._aux(_RESERVED, name), self._aux(_FILLING, name)
        # Holding the entry's lock, whatever is left of an earlier fill of it is abandoned.
        _unlink(reservation)
        _unlink(filling)
        with self._locked(os.path.join(self.directory, _LOCK)):
            if not self._make_room(size, limit, keep=name):
                return False
            with open(reservation, "w") as handle:
                handle.write(str(size))
        try:
            fill(filling)
            os.chmod(filling, 0o555 if executable else 0o444)
            # Published under the lock, which readers hold shared to link: none links to the
            # entry before it is immutable, and it replaces its reservation in one step.
            with self._locked(os.path.join(self.directory, _LOCK)):
                os.rename(filling, cached)
                set_immutable(cached, True)
                _unlink(reservation)
        finally:
            _unlink(filling)
            _unlink(reservation)
        return True

    def release(self) -> None:
        """The job ended: its uses of cached files end too."""
        for ref in self._refs:
            _unlink(ref)
        self._refs = []

    # -- space: called with the cache-wide lock held exclusively ---------------------------------

    def _entries(self) -> list[tuple[float, int, str]]:
        entries = []
        for entry in os.scandir(self.directory):
            if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                entries.append((info.st_mtime, info.st_size, entry.name))
        return entries

    def _reserved(self) -> int:
        """Bytes reserved by fills in progress; those of processes that died are removed."""
        total = 0
        for name in os.listdir(os.path.join(self.directory, _RESERVED)):
            fd = os.open(self._aux(_LOCKS, name), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Being filled (or about to be, by a process that will clear this first).
                with contextlib.suppress(FileNotFoundError, ValueError), open(self._aux(_RESERVED, name)) as handle:
                    total += int(handle.read())
            else:
                _unlink(self._aux(_FILLING, name))
                _unlink(self._aux(_RESERVED, name))
            finally:
                os.close(fd)
        return total

    def _holders(self, name: str) -> list[str]:
        try:
            return os.listdir(self._aux(_REFS, name))
        except FileNotFoundError:
            return []

    def _in_use(self, name: str) -> bool:
        return any(pid_alive(int(holder.split("-", 1)[0])) for holder in self._holders(name))

    def _evict(self, name: str) -> None:
        path = os.path.join(self.directory, name)
        set_immutable(path, False)
        _unlink(path)
        for holder in self._holders(name):  # all of exited processes
            _unlink(self._aux(_REFS, os.path.join(name, holder)))
        with contextlib.suppress(OSError):
            os.rmdir(self._aux(_REFS, name))

    def _make_room(self, size: int, limit: int, keep: str) -> bool:
        """Evict, oldest first, until ``size`` more bytes fit in ``limit``; if they cannot fit
        even with every entry no running job holds evicted, evict nothing and return False."""
        entries = self._entries()
        used = self._reserved() + sum(entry_size for _, entry_size, _ in entries)
        evictable = sorted(entry for entry in entries if entry[2] != keep and not self._in_use(entry[2]))
        if used - sum(entry_size for _, entry_size, _ in evictable) + size > limit:
            return False
        for _, entry_size, name in evictable:
            if used + size <= limit:
                break
            self._evict(name)
            used -= entry_size
        return True
