"""The small key/value interface a job store needs from a storage service.

Back ends (``toilray.backends.storage``) implement it for a local directory and for object
stores. Keys are '/'-separated relative paths. Every write is atomic: a reader sees the old
object, or the whole new one, never a part.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager
from typing import IO


class LeaderLock(ABC):
    """Held by the one leader of a workflow; released on ``release`` or when the process dies."""

    @abstractmethod
    def release(self) -> None: ...


class Storage(ABC):
    locator: str

    @abstractmethod
    def create_root(self) -> bool:
        """Create the store's root; False if it already exists."""

    @abstractmethod
    def root_exists(self) -> bool: ...

    @abstractmethod
    def destroy(self) -> None:
        """Remove everything; succeed if nothing is there."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Raise FileNotFoundError when the key is missing."""

    def identity(self, key: str) -> Hashable | None:
        """A cheap name for the object now under ``key``, the same for every key that
        ``write_bytes_once_shared`` gave it and different once ``key`` names another object;
        None where the back end has none (its keys never share an object). Raise
        FileNotFoundError when the key is missing."""
        return None

    def read_bytes_identified(self, key: str) -> tuple[bytes, Hashable | None]:
        """``read_bytes`` and the ``identity`` of the very object read."""
        return self.read_bytes(key), None

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Atomically create or replace ``key``."""

    @abstractmethod
    def write_bytes_once(self, key: str, data: bytes) -> bool:
        """Atomically create ``key`` unless it exists; return whether this call created it."""

    def write_bytes_once_shared(self, keys: list[str], data: bytes) -> list[bool] | None:
        """Store ``data`` once under each of ``keys`` (each created atomically unless it exists,
        in order); return which of them this call created. None where the back end cannot give
        one object several names: the caller then writes each key's own data."""
        return None

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (and, for a prefix, everything under it); a missing key is fine."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Names directly under ``prefix`` (no recursion)."""

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def is_executable(self, key: str) -> bool: ...

    @abstractmethod
    def put_file(self, key: str, local_path: str, executable: bool) -> None:
        """Atomically store a copy of ``local_path`` under ``key``."""

    @abstractmethod
    def get_file(self, key: str, local_path: str, allow_link: bool) -> None:
        """Place the object at ``local_path``, a new path. With ``allow_link`` it may be a
        hard link to a read-only copy (no data copied); otherwise a private, writable copy."""

    @abstractmethod
    def open_read(self, key: str) -> IO[bytes]: ...

    @abstractmethod
    def open_write(self, key: str, executable: bool = False) -> AbstractContextManager[IO[bytes]]:
        """A binary handle; the object appears atomically when the context exits cleanly."""

    @abstractmethod
    def acquire_leader_lock(self, key: str, owner: str) -> LeaderLock:
        """Raise JobStoreLockedException when another live leader holds it."""
