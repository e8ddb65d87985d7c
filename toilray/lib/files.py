"""Local file helpers shared by the storage back ends and the runners."""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Callable
from typing import Any

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x10

# Errors after which a hard link is impossible here but a copy will do.
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)
# Errors of copy_file_range where the kernel or file system cannot do it (older kernels, other
# file systems, some FUSE and network ones): a plain copy will do.
_NO_COPY_RANGE = (errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)


def _set_immutable_fd(fd: int, immutable: bool) -> bool:
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | _FS_IMMUTABLE_FL if immutable else flags[0] & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError:
        return False


def set_immutable(path: str, immutable: bool) -> bool:
    """Set or clear the immutable attribute (``chattr +i``), which stops even root from writing;
    False where the file system or user cannot."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return _set_immutable_fd(fd, immutable)
    finally:
        os.close(fd)


def unlink_sealed(path: str) -> None:
    """Remove one name of a file that may be immutable, leaving its other names as sealed as
    they were: a node cache entry can share a stored file's inode (see toilray.fileStores.cache),
    and jobs may still read it through the cache after the store lets the file go."""
    try:
        os.unlink(path)
        return
    except PermissionError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not _set_immutable_fd(fd, False):
            raise PermissionError(errno.EPERM, "cannot clear the immutable attribute", path)
        try:
            os.unlink(path)
        finally:
            if os.fstat(fd).st_nlink > 0:
                _set_immutable_fd(fd, True)
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """``shutil.rmtree`` that also removes immutable files (see ``unlink_sealed``) and entries
    of directories left without write permission; what still cannot go is left."""
    def retry(func: Callable[..., Any], failed: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            if func is os.unlink:
                unlink_sealed(failed)
            else:
                func(failed)

    shutil.rmtree(path, onerror=retry)


def copy_file(source: str, destination: str) -> None:
    """Copy ``source`` to a new file ``destination`` with copy_file_range, which shares the data
    (a reflink) on file systems that can (XFS, Btrfs) and copies it in the kernel elsewhere; a
    plain copy where the call is not supported."""
    with open(source, "rb") as src, open(destination, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                done = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if done == 0:  # a file system that reports no data (seen on some FUSE ones)
                    break
                copied += done
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
        # The rest, from where copy_file_range stopped (both offsets are there).
        src.seek(copied)
        dst.seek(copied)
        shutil.copyfileobj(src, dst)


def link_or_copy(source: str, destination: str, allow_link: bool) -> bool:
    """Hard-link ``source`` to ``destination`` where allowed and possible, else copy it.

    Returns True if it copied (the caller then sets the copy's mode).
    """
    if allow_link:
        try:
            os.link(source, destination)
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
    copy_file(source, destination)
    return True


def build_tree(entries: dict[str, str | None], root: str, fetch: Callable[[str, str], Any]) -> None:
    """Lay out a directory manifest under ``root``: a ``None`` entry is a directory, any other
    is a stored file's ID, which ``fetch(file_id, destination)`` writes."""
    os.makedirs(root, exist_ok=True)
    for rel, file_id in entries.items():
        dest = os.path.join(root, rel)
        if file_id is None:
            os.makedirs(dest, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fetch(file_id, dest)
