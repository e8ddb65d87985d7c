"""The node-local cache of global files: one read-only copy per file per node.

Jobs on a node that read the same global file share one cached copy instead of each
making their own. Read-only must hold even for root, whom permission bits do not stop:
where the file system allows it the cached copy is marked immutable (``chattr +i``) and
jobs get symbolic links to it (an immutable inode cannot gain hard links); otherwise it is
mode 0444 and jobs get hard links. The cache lives in the workflow's node-local directory
and is removed with it when the workflow ends.
"""

from __future__ import annotations

import array
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable

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
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, file_id: str) -> str:
        digest = hashlib.sha1(file_id.encode()).hexdigest()[:24]
        return os.path.join(self.directory, f"{digest}-{os.path.basename(file_id)}")

    def place(self, file_id: str, destination: str, executable: bool, fill: Callable[[str], None]) -> None:
        """Put a read-only view of the file at ``destination``, filling the cache if needed."""
        cached = self._path(file_id)
        if not os.path.exists(cached):
            os.makedirs(self.directory, exist_ok=True)
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
        except OSError:
            # An immutable file cannot gain hard links (or the cache is on another device).
            os.symlink(cached, destination)
