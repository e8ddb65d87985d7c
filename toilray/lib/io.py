"""Toil's ``toil.lib.io`` file helpers: temporary directories, robust deletion, atomic creation."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator

StrPath = str | os.PathLike[str]


def mkdtemp(suffix: str | None = None, prefix: str | None = None, dir: StrPath | None = None) -> str:
    """``tempfile.mkdtemp``, but mode 711: other users (a Docker daemon on NFS) may traverse it."""
    path = tempfile.mkdtemp(suffix=suffix, prefix=prefix, dir=dir)
    os.chmod(path, stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _busy_or_gone(exc: OSError) -> bool:
    """A path that went away meanwhile, or a mount point ('Device or resource busy'): Toil skips both."""
    return isinstance(exc, FileNotFoundError) or exc.errno == errno.EBUSY


def robust_rmtree(path: str | bytes) -> None:
    """Delete a file or directory tree; nothing to do if it is missing or vanishes meanwhile.

    Works in bytes, so that undecodable names are removed too; a permission error is raised.
    """
    target = path if isinstance(path, bytes) else os.fsencode(path)
    if not os.path.lexists(target):
        return
    try:
        if os.path.isdir(target) and not os.path.islink(target):
            for child in os.listdir(target):
                robust_rmtree(os.path.join(target, child))
            os.rmdir(target)
        else:
            os.unlink(target)
    except OSError as exc:
        if not _busy_or_gone(exc):
            raise


def atomic_tmp_file(final_path: StrPath) -> str:
    """A temporary name beside ``final_path``, with its extension; a path in /dev unchanged."""
    final = os.fspath(final_path)
    directory = os.path.dirname(os.path.normpath(final))
    if directory == "/dev":
        return final
    extension = os.path.splitext(final)[1]
    return os.path.join(directory, f"{os.path.basename(final)}.{uuid.uuid4()}.tmp{extension}")


def atomic_install(tmp_path: StrPath, final_path: StrPath) -> None:
    """Move ``tmp_path`` to ``final_path`` in one step (nothing to move for a path in /dev)."""
    if os.path.dirname(os.path.normpath(os.fspath(final_path))) != "/dev":
        os.rename(tmp_path, final_path)


@contextlib.contextmanager
def AtomicFileCreate(final_path: StrPath, keep: bool = False) -> Iterator[str]:
    """Yield a temporary path to write; when the block succeeds it becomes ``final_path``. When
    it raises, nothing appears at ``final_path`` and the temporary file is removed (unless ``keep``)."""
    tmp_path = atomic_tmp_file(final_path)
    try:
        yield tmp_path
        atomic_install(tmp_path, final_path)
    except Exception:
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
        raise


def atomic_copy(src_path: str, dest_path: str, executable: bool | None = None) -> None:
    """Copy a file so that ``dest_path`` is either absent or complete; ``executable`` (default:
    as the source is) sets the owner's execute bit."""
    if executable is None:
        executable = bool(os.stat(src_path).st_mode & stat.S_IXUSR)
    with AtomicFileCreate(dest_path) as tmp_path:
        shutil.copyfile(src_path, tmp_path)
        if executable:
            os.chmod(tmp_path, os.stat(tmp_path).st_mode | stat.S_IXUSR)
