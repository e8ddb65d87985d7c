"""A per-node cache of downloaded objects, so that many jobs on a node download a file once.

Entries live at ``<root>/objects/<key>/<version>``: keyed by the object's key and by its
version, so an object replaced in the store is never served stale. An entry is filled under
an exclusive lock (other processes wanting the same entry wait for it rather than download
it too), written to a private temporary name, and renamed into place, so that a reader sees
a whole entry or none. Entries are read-only; jobs get hard links to them.

The cache has no size limit: it is emptied for a store when the store is destroyed on this
node, and an entry when its key is deleted from this node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class NodeCache:
    def __init__(self, root: str) -> None:
        self.root = root
        self._objects = os.path.join(root, "objects")
        self._tmp = os.path.join(root, "tmp")

    def _entry(self, key: str, version: str) -> str:
        parts = [p for p in key.split("/") if p not in ("", ".", "..")]
        return os.path.join(self._objects, *parts, _UNSAFE.sub("_", version) or "v")

    def lookup(self, key: str, version: str) -> str | None:
        entry = self._entry(key, version)
        return entry if os.path.exists(entry) else None

    def temporary_path(self) -> str:
        """A new path for a scratch file on the cache's file system (for staging uploads)."""
        os.makedirs(self._tmp, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=self._tmp)
        os.close(fd)
        return path

    @contextlib.contextmanager
    def _locked(self, entry: str) -> Iterator[None]:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        fd = os.open(entry + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def fetch(self, key: str, version: str, executable: bool, fill: Callable[[str], None]) -> str:
        """The path of the cached copy, made with ``fill(temporary_path)`` if there is none."""
        entry = self._entry(key, version)
        if os.path.exists(entry):
            return entry
        with self._locked(entry):
            if os.path.exists(entry):
                return entry
            tmp = self.temporary_path()
            try:
                fill(tmp)
                os.chmod(tmp, 0o555 if executable else 0o444)
                os.replace(tmp, entry)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return entry

    def evict(self, key_prefix: str) -> None:
        """Forget every entry of keys under ``key_prefix`` (or of that key)."""
        parts = [p for p in key_prefix.split("/") if p not in ("", ".", "..")]
        if parts:
            shutil.rmtree(os.path.join(self._objects, *parts), ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
