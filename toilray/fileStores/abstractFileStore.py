"""Toil's ``toil.fileStores.abstractFileStore.AbstractFileStore``: the type of ``job.fileStore``.

It names the file API a running job has; ``toilray.fileStores.fileStore.FileStore`` is the one
implementation (global files through the job store and the node cache, local scratch space).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import IO, Any

from toilray.fileStores import FileID
from toilray.jobStores.abstractJobStore import AbstractJobStore


class AbstractFileStore(ABC):
    """The files of one job attempt: ``job.fileStore`` (and the ``fileStore`` argument of ``run``)."""

    jobStore: AbstractJobStore

    @abstractmethod
    def getLocalTempDir(self) -> str: ...

    @abstractmethod
    def getLocalTempFile(self, suffix: str | None = None, prefix: str | None = None) -> str: ...

    @abstractmethod
    def getLocalTempFileName(self, suffix: str | None = None, prefix: str | None = None) -> str: ...

    @abstractmethod
    def writeGlobalFile(self, localFileName: str, cleanup: bool = False,
                        executable: bool | None = None) -> FileID: ...

    @abstractmethod
    def writeGlobalFileStream(self, cleanup: bool = False, basename: str | None = None, encoding: str | None = None,
                              errors: str | None = None) -> AbstractContextManager[tuple[IO[Any], FileID]]: ...

    @abstractmethod
    def readGlobalFile(self, fileStoreID: str, userPath: str | None = None, cache: bool = True,
                       mutable: bool = False, symlink: bool = False) -> str: ...

    @abstractmethod
    def readGlobalFileStream(self, fileStoreID: str, encoding: str | None = None,
                             errors: str | None = None) -> AbstractContextManager[IO[Any]]: ...

    @abstractmethod
    def getGlobalFileSize(self, fileStoreID: str) -> int: ...

    @abstractmethod
    def deleteLocalFile(self, fileStoreID: str) -> None: ...

    @abstractmethod
    def deleteGlobalFile(self, fileStoreID: str) -> None: ...

    @abstractmethod
    def importFile(self, srcUrl: str, sharedFileName: str | None = None) -> FileID | None: ...

    @abstractmethod
    def exportFile(self, jobStoreFileID: str, dstUrl: str) -> None: ...

    @abstractmethod
    def logToMaster(self, text: str, level: int = logging.INFO) -> None: ...
