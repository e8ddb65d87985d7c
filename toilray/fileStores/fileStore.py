"""``job.fileStore``: the file API a running job sees (Toil's AbstractFileStore)."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO, Any

from toilray.deferred import DeferredFunctions
from toilray.fileStores import FileID
from toilray.fileStores.abstractFileStore import AbstractFileStore
from toilray.fileStores.cache import NodeCache
from toilray.jobStores.jobStore import JobStore
from toilray.lib import urls

logger = logging.getLogger("toilray.worker")


class FileStore(AbstractFileStore):
    """Files for one job attempt. Deletions of global files take effect when the job commits."""

    jobStore: JobStore

    def __init__(self, job_store: JobStore, job_name: str, scratch_parent: str, launch_dir: str,
                 deferred: DeferredFunctions, cache: NodeCache | None = None) -> None:
        self.jobStore = job_store
        self.deferred = deferred
        self._cache = cache
        # The most cache space this job may claim: its disk requirement (set by the worker).
        self.cache_limit = 0
        self._job_name = job_name
        self._scratch_parent = scratch_parent
        self._attempt_dir: str | None = None
        self._launch_dir = launch_dir
        self._local_copies: dict[str, list[str]] = {}
        self.deleted_files: list[str] = []
        self.cleanup_files: list[str] = []
        self.messages: list[tuple[int, str]] = []

    # -- local scratch space -----------------------------------------------------------------

    @property
    def _dir(self) -> str:
        """This attempt's scratch directory, made on first use (most jobs never need one)."""
        if self._attempt_dir is None:
            self._attempt_dir = tempfile.mkdtemp(prefix=f"{self._job_name[:40]}-", dir=self._scratch_parent)
        return self._attempt_dir

    @property
    def attempt_dir(self) -> str | None:
        return self._attempt_dir

    def getLocalTempDir(self) -> str:
        return tempfile.mkdtemp(dir=self._dir)

    def getLocalTempFile(self, suffix: str | None = None, prefix: str | None = None) -> str:
        fd, path = tempfile.mkstemp(suffix=suffix or ".tmp", prefix=prefix or "tmp", dir=self._dir)
        os.close(fd)
        return os.path.abspath(path)

    def getLocalTempFileName(self, suffix: str | None = None, prefix: str | None = None) -> str:
        return os.path.join(self._dir, f"{prefix or 'tmp'}{uuid.uuid4().hex}{suffix or '.tmp'}")

    # -- global files ------------------------------------------------------------------------

    def writeGlobalFile(self, localFileName: str, cleanup: bool = False, executable: bool | None = None) -> FileID:
        """Copy a local file into the job store; the ID keeps its basename and executable bit."""
        path = localFileName if os.path.isabs(localFileName) else os.path.join(os.getcwd(), localFileName)
        if executable is None:
            executable = os.access(path, os.X_OK)
        key = self.jobStore.write_file(path, executable)
        file_id = FileID(key, os.path.getsize(path), executable)
        self._local_copies.setdefault(key, []).append(path)
        if cleanup:
            self.cleanup_files.append(key)
        return file_id

    @contextlib.contextmanager
    def writeGlobalFileStream(
        self,
        cleanup: bool = False,
        basename: str | None = None,
        encoding: str | None = None,
        errors: str | None = None,
    ) -> Iterator[tuple[IO[Any], FileID]]:
        """Yield ``(handle, FileID)``; the file is stored when the block ends. Do not close it."""
        key, writer = self.jobStore.write_file_stream(basename)
        file_id = FileID(key, 0, False)
        with writer as raw:
            if encoding is not None or errors is not None:
                text = io.TextIOWrapper(raw, encoding=encoding or "utf-8", errors=errors, write_through=True)
                yield text, file_id
                text.flush()
                text.detach()
            else:
                yield raw, file_id
        file_id.size = self.jobStore.file_size(key)
        if cleanup:
            self.cleanup_files.append(key)

    def readGlobalFile(
        self,
        fileStoreID: str,
        userPath: str | None = None,
        cache: bool = True,
        mutable: bool = False,
        symlink: bool = False,
    ) -> str:
        """A local path holding the file: read-only and shared through the node cache, unless
        ``mutable`` (a private writable copy) or ``cache=False`` / caching is off (a private copy)."""
        if userPath is not None:
            path = os.path.abspath(userPath)
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, "Cannot Overwrite: refusing to replace an existing file", path)
        else:
            directory = os.path.join(self._dir, "reads", uuid.uuid4().hex)
            os.makedirs(directory)
            path = os.path.join(directory, os.path.basename(fileStoreID))
        placed = False
        if not mutable and cache and self._cache is not None:
            # The cache entry of a file in a local store is the store's own read-only inode
            # (no copy); the cache seals it immutable where it can, which holds even for root.
            placed = self._cache.place(
                str(fileStoreID), path, self.jobStore.file_is_executable(fileStoreID),
                self.getGlobalFileSize(fileStoreID), self.cache_limit,
                lambda tmp: self.jobStore.read_file(fileStoreID, tmp, allow_link=True),
            )
        if not placed:
            self.jobStore.read_file(fileStoreID, path, allow_link=False)
        self._local_copies.setdefault(str(fileStoreID), []).append(path)
        return path

    @contextlib.contextmanager
    def readGlobalFileStream(
        self, fileStoreID: str, encoding: str | None = None, errors: str | None = None
    ) -> Iterator[IO[Any]]:
        with self.jobStore.open_file(fileStoreID) as raw:
            if encoding is not None or errors is not None:
                yield io.TextIOWrapper(raw, encoding=encoding or "utf-8", errors=errors)
            else:
                yield raw

    def getGlobalFileSize(self, fileStoreID: str) -> int:
        size = getattr(fileStoreID, "size", None)
        if isinstance(size, int) and size > 0:
            return size
        return self.jobStore.file_size(fileStoreID)

    def deleteLocalFile(self, fileStoreID: str) -> None:
        """Remove this job's local copies of a file; ENOENT if it has none."""
        paths = self._local_copies.pop(str(fileStoreID), [])
        if not paths:
            raise OSError(errno.ENOENT, f"No local copy of {fileStoreID} made by this job")
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def deleteGlobalFile(self, fileStoreID: str) -> None:
        """Delete the file from the job store once this job has finished successfully."""
        with contextlib.suppress(OSError):
            self.deleteLocalFile(fileStoreID)
        self.deleted_files.append(str(fileStoreID))

    def close(self) -> None:
        """The attempt ended: run its deferred functions, release what it held in the node cache."""
        try:
            self.deferred.run()
        finally:
            if self._cache is not None:
                self._cache.release()

    # -- import / export ---------------------------------------------------------------------

    def importFile(self, srcUrl: str, sharedFileName: str | None = None) -> FileID | None:
        return urls.import_url(self.jobStore, srcUrl, self._launch_dir, sharedFileName)

    def exportFile(self, jobStoreFileID: str, dstUrl: str) -> None:
        urls.export_url(self.jobStore, jobStoreFileID, dstUrl, self._launch_dir)

    import_file = importFile
    export_file = exportFile

    # -- messages ----------------------------------------------------------------------------

    def logToMaster(self, text: str, level: int = logging.INFO) -> None:
        """Log on the worker and send the message to the leader's log."""
        logger.log(level, text)
        self.messages.append((level, text))

    log_to_leader = logToMaster
