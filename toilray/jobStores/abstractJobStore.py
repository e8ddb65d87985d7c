"""Toil's ``toil.jobStores.abstractJobStore``: the job store's file API under Toil's names.

``job.fileStore.jobStore`` and ``Toil.getJobStore`` are a ``JobStore`` (``jobStore.py``), which
subclasses this: the camelCase methods here are what Toil scripts call, built on the primitives
that ``JobStore`` implements for every storage back end.
"""

from __future__ import annotations

import contextlib
import io
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import IO, Any

from toilray.exceptions import (
    ConcurrentFileModificationException,
    JobStoreExistsException,
    NoSuchFileException,
    NoSuchJobException,
    NoSuchJobStoreException,
)

__all__ = ["AbstractJobStore", "ConcurrentFileModificationException", "JobStoreExistsException",
           "NoSuchFileException", "NoSuchJobException", "NoSuchJobStoreException"]


class AbstractJobStore(ABC):
    """A workflow's durable store: its files under Toil's method names."""

    locator: str

    # -- what a store implements -------------------------------------------------------------

    @property
    @abstractmethod
    def config(self) -> Any:
        """The ``Config`` of the workflow's current (or last) leader session."""

    @abstractmethod
    def write_file(self, local_path: str, executable: bool | None = None, basename: str | None = None) -> str: ...

    @abstractmethod
    def write_file_stream(self, basename: str | None,
                          executable: bool = False) -> tuple[str, AbstractContextManager[IO[bytes]]]: ...

    @abstractmethod
    def read_file(self, file_id: str, local_path: str, allow_link: bool) -> None: ...

    @abstractmethod
    def open_file(self, file_id: str) -> IO[bytes]: ...

    @abstractmethod
    def file_exists(self, file_id: str) -> bool: ...

    @abstractmethod
    def file_size(self, file_id: str) -> int: ...

    @abstractmethod
    def delete_file(self, file_id: str) -> None: ...

    @abstractmethod
    def shared_key(self, name: str) -> str: ...

    @abstractmethod
    def open_file_for_writing(self, key: str, executable: bool = False) -> AbstractContextManager[IO[bytes]]: ...

    @abstractmethod
    def read_shared(self, name: str) -> bytes: ...

    # -- Toil's names ------------------------------------------------------------------------

    def writeFile(self, localFilePath: str, jobStoreID: str | None = None, cleanup: bool = False) -> str:
        """Store a copy of a local file; returns its file ID. (``jobStoreID`` and ``cleanup`` tie
        the file to a job in Toil; toilray keeps a file until it is deleted.)"""
        return self.write_file(localFilePath)

    @contextlib.contextmanager
    def writeFileStream(self, jobStoreID: str | None = None, cleanup: bool = False, basename: str | None = None,
                        encoding: str | None = None, errors: str | None = None) -> Iterator[tuple[IO[Any], str]]:
        """Yield (a handle to write, the new file's ID); the file appears when the block ends."""
        file_id, writer = self.write_file_stream(basename)
        with writer as raw, _maybe_text(raw, encoding, errors) as handle:
            yield handle, file_id

    def readFile(self, jobStoreFileID: str, localFilePath: str, symlink: bool = False) -> None:
        """Copy a stored file to ``localFilePath`` (a private, writable copy, replacing what is there)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(localFilePath)
        self.read_file(jobStoreFileID, localFilePath, allow_link=False)

    @contextlib.contextmanager
    def readFileStream(self, jobStoreFileID: str, encoding: str | None = None,
                       errors: str | None = None) -> Iterator[IO[Any]]:
        with self.open_file(jobStoreFileID) as raw, _maybe_text(raw, encoding, errors) as handle:
            yield handle

    def fileExists(self, jobStoreFileID: str) -> bool:
        """Whether the file is stored; False (not an error) for an ID that was never a file's."""
        try:
            return self.file_exists(jobStoreFileID)
        except NoSuchFileException:
            return False

    def getFileSize(self, jobStoreFileID: str) -> int:
        return self.file_size(jobStoreFileID)

    get_file_size = getFileSize

    def deleteFile(self, jobStoreFileID: str) -> None:
        """Delete a stored file; deleting one that is gone already is fine."""
        self.delete_file(jobStoreFileID)

    @contextlib.contextmanager
    def writeSharedFileStream(self, sharedFileName: str, encrypted: bool | None = None,
                              encoding: str | None = None, errors: str | None = None) -> Iterator[IO[Any]]:
        """Create or replace the shared file of that name; it appears when the block ends."""
        with self.open_file_for_writing(self.shared_key(sharedFileName)) as raw, \
                _maybe_text(raw, encoding, errors) as handle:
            yield handle

    @contextlib.contextmanager
    def readSharedFileStream(self, sharedFileName: str, encoding: str | None = None,
                             errors: str | None = None) -> Iterator[IO[Any]]:
        """Read a shared file; NoSuchFileException when there is none of that name."""
        with _maybe_text(io.BytesIO(self.read_shared(sharedFileName)), encoding, errors) as handle:
            yield handle


@contextlib.contextmanager
def _maybe_text(raw: IO[bytes], encoding: str | None, errors: str | None) -> Iterator[IO[Any]]:
    """``raw`` itself, or a text wrapper when an encoding (or an error policy) is asked for; the
    wrapper is flushed and let go of, so that ``raw`` stays for its owner to close."""
    if encoding is None and errors is None:
        yield raw
        return
    text = io.TextIOWrapper(raw, encoding=encoding or "utf-8", errors=errors, write_through=True)
    try:
        yield text
    finally:
        text.flush()
        text.detach()
