"""File IDs and the per-job file store (``job.fileStore``)."""

from __future__ import annotations

from typing import Any


class FileID(str):
    """A job store file ID: a ``str`` that also knows the file's size and executable bit."""

    size: int
    executable: bool

    def __new__(cls, fileStoreID: str, size: int, executable: bool = False) -> FileID:
        instance = super().__new__(cls, fileStoreID)
        instance.size = size
        instance.executable = executable
        return instance

    def __reduce__(self) -> tuple[Any, ...]:
        return FileID, (str(self), self.size, self.executable)

    def pack(self) -> str:
        """One string with everything, for passing the ID through code that only keeps str."""
        return f"{self.size}:{int(self.executable)}:{self}"

    @classmethod
    def unpack(cls, packedFileStoreID: str) -> FileID:
        size, executable, file_id = packedFileStoreID.split(":", 2)
        return cls(file_id, int(size), executable == "1")

    @classmethod
    def forPath(cls, fileStoreID: str, filePath: str) -> FileID:
        import os

        return cls(fileStoreID, os.path.getsize(filePath), os.access(filePath, os.X_OK))


__all__ = ["FileID"]
