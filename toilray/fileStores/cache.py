"""The node-local cache of global files: one read-only copy per file per node.

Jobs on a node that read the same global file share one cached copy instead of each
making their own. Read-only must hold even for root, whom permission bits do not stop:
where the file system allows it the cached copy is marked immutable (``chattr +i``) and
jobs get symbolic links to it (an immutable inode cannot gain hard links); otherwise it is
mode 0444 and jobs get hard links. The cache lives in the workflow's node-local directory
and is removed with it when the workflow ends. A job may grow the cache only up to its own
disk requirement, evicting (least recently filled first) entries that no running job holds;
a file that still does not fit is given to the job as a private copy instead.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable

from toilray.lib.processes import pid_alive

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x10


def set_immutable(path: str, immutable: bool) -> bool:
    """Set or clear the immutable attribute; False where the file system or user cannot."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | _FS_IMMUTABLE_FL if immutable else flags[0] & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_cache(directory: str) -> None:
    """Delete a cache directory, clearing immutable attributes first."""
    if not os.path.isdir(directory):
        return
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            set_immutable(entry.path, False)
    shutil.rmtree(directory, ignore_errors=True)


class NodeCache:
    """One node's cached files. Each use of an entry is recorded as a file named after the
    reading process in ``<entry>.refs/`` until the job ends, so that making room for a new
    file never evicts one that a running job holds."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._token = f"{os.getpid()}-{uuid.uuid4().hex}"
        self._refs: list[str] = []

    def _path(self, file_id: str) -> str:
        digest = hashlib.sha1(file_id.encode()).hexdigest()[:24]
        return os.path.join(self.directory, f"{digest}-{os.path.basename(file_id)}")

    def place(self, file_id: str, destination: str, executable: bool, size: int, limit: int,
              fill: Callable[[str], None]) -> bool:
        """Put a read-only view of the file at ``destination`` and return True, filling the cache
        if needed; return False (placing nothing) when the file cannot fit in ``limit`` bytes of
        cache even after evicting the entries no running job holds."""
        cached = self._path(file_id)
        os.makedirs(f"{cached}.refs", exist_ok=True)
        ref = os.path.join(f"{cached}.refs", self._token)
        open(ref, "w").close()  # before the entry is used, so no one evicts it under us
        self._refs.append(ref)
        if not os.path.exists(cached):
            if not self._make_room(size, limit, keep=cached):
                return False
            tmp = f"{cached}.{uuid.uuid4().hex}.tmp"
            fill(tmp)
            os.chmod(tmp, 0o555 if executable else 0o444)
            try:
                os.rename(tmp, cached)
            except PermissionError:
                # Another job cached it first and already made it immutable: use theirs.
                os.unlink(tmp)
            else:
                set_immutable(cached, True)
        try:
            os.link(cached, destination)
        except FileNotFoundError:
            return False
        except OSError:
            # An immutable file cannot gain hard links (or the cache is on another device).
            os.symlink(cached, destination)
        return True

    def release(self) -> None:
        """The job ended: its uses of cached files end too."""
        for ref in self._refs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ref)
        self._refs = []

    def _entries(self) -> list[tuple[float, int, str]]:
        entries = []
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False) and not entry.name.endswith(".tmp"):
                info = entry.stat(follow_symlinks=False)
                entries.append((info.st_mtime, info.st_size, entry.path))
        return entries

    @staticmethod
    def _in_use(path: str) -> bool:
        try:
            holders = os.listdir(f"{path}.refs")
        except FileNotFoundError:
            return False
        return any(pid_alive(int(name.split("-", 1)[0])) for name in holders)

    def _make_room(self, size: int, limit: int, keep: str) -> bool:
        entries = self._entries()
        used = sum(entry_size for _, entry_size, _ in entries)
        for _, entry_size, path in sorted(entries):
            if used + size <= limit:
                break
            if path != keep and not self._in_use(path):
                set_immutable(path, False)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                shutil.rmtree(f"{path}.refs", ignore_errors=True)
                used -= entry_size
        return used + size <= limit
