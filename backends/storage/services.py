"""What the object-store job store needs from one storage service (S3 or GCS).

``ObjectStorage`` is written once against this interface; ``s3.py`` and ``gcs.py`` fill in
the few calls where the services differ: conditional writes, object metadata, bucket
management, bulk deletes and how each reports a refused request. Paths are
``bucket/key`` strings, as fsspec uses them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# put_bytes(precondition=CREATE_ONLY) writes only where no object exists.
CREATE_ONLY = ""


@dataclass(frozen=True)
class ObjectStat:
    size: int
    version: str  # changes with every write of the key: the ETag on S3, the generation on GCS
    metadata: Mapping[str, str]
    md5: bytes | None  # the service's own MD5 of the content, where it keeps one


class ObjectService(ABC):
    """One storage service, reached through an fsspec file system with retries of its own."""

    scheme: str
    fs: Any  # an fsspec AsyncFileSystem (s3fs or gcsfs); their stubs are untyped

    @abstractmethod
    def bucket_exists(self, bucket: str) -> bool: ...

    @abstractmethod
    def create_bucket(self, bucket: str) -> bool:
        """Create ``bucket``; False when it already existed (made by someone else meanwhile)."""

    @abstractmethod
    def delete_bucket(self, bucket: str) -> bool:
        """Delete an empty bucket; False when it is not empty or already gone."""

    @abstractmethod
    def stat(self, path: str) -> ObjectStat:
        """Raise FileNotFoundError for a missing object or bucket."""

    @abstractmethod
    def put_bytes(self, path: str, data: bytes, metadata: Mapping[str, str], precondition: str | None) -> str | None:
        """Write ``data``; with a precondition only if the object is absent (CREATE_ONLY) or
        still at that version. Return the new version, or None when the precondition failed."""

    @abstractmethod
    def read_versioned(self, path: str) -> tuple[bytes, str]:
        """The content and the version it has, from one request (so they belong together)."""

    @abstractmethod
    def upload_file(self, local_path: str, path: str, metadata: Mapping[str, str], verify: bool) -> None:
        """Stream a local file into ``path`` (multipart for large files), replacing any object."""

    @abstractmethod
    def delete_objects(self, paths: list[str]) -> None:
        """Delete these objects; missing ones are fine."""

    def abort_uploads(self, bucket: str, prefix: str) -> None:
        """Abandon unfinished multipart uploads under ``prefix`` (services that keep them)."""
        return None

    @abstractmethod
    def is_access_denied(self, exc: BaseException) -> bool: ...

    # -- the same on every service -----------------------------------------------------------

    def read_range(self, path: str, start: int, end: int) -> bytes:
        return bytes(self.fs.cat_file(path, start=start, end=end))

    def read_all(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(path))

    def list_dir(self, path: str) -> list[str]:
        """Names directly under ``path`` (objects and common prefixes), without the path."""
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        prefix = path.rstrip("/") + "/"
        return [entry[len(prefix):].rstrip("/") for entry in entries if entry.startswith(prefix)]

    def find(self, path: str) -> list[str]:
        """Every object under the prefix ``path`` (treated as a directory)."""
        prefix = path.rstrip("/") + "/"
        try:
            found = self.fs.find(prefix)
        except FileNotFoundError:
            return []
        return [entry for entry in found if entry.startswith(prefix)]
