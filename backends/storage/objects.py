"""Job store storage in an object store (S3 or GCS), one implementation for both.

Object stores have no rename, so atomicity comes from the services themselves: a single
PUT (or a completed multipart upload) replaces an object whole, and a create-only write
(``If-None-Match: *`` on S3, ``ifGenerationMatch=0`` on GCS) is the commit primitive. The
store's root is the marker object ``.toilray-store``, written create-only by the first
leader; it also records whether the store created its bucket, so that ``destroy`` removes
that bucket too once it is empty (a bucket the user made is left in place).

Files carry two metadata entries: whether they are executable, and the SHA-256 of their
content, computed before upload and checked on every download unless checksum verification
is switched off (objects written by others are checked against the service's own MD5 where
it keeps one). Uploads are checked by the services' transfer protocols as well.

There is no download cache here: ``get_file`` downloads to the path it is given and
``open_read`` reads the object itself. A node keeps one copy of a file that many of its jobs
read in the file store's bounded node cache (``toilray/fileStores/cache.py``), which fills
itself through ``get_file`` once per node; a second, unbounded cache beneath it would hold
every file twice and free nothing when that cache evicts. Uploads are staged in a plain
temporary file, removed once the object is written.

Every call is retried through transient faults (see ``faults``); requests the service
refuses fail at once with a one-line message naming the object.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import IO, Any, TypeVar

from toilray.backends.storage.faults import (
    ChecksumMismatchError,
    Retrier,
    StorageAccessDeniedError,
    StorageConfigurationError,
)
from toilray.backends.storage.lease import acquire_lease
from toilray.backends.storage.services import CREATE_ONLY, ObjectService, ObjectStat

from toilray.jobStores.storage import LeaderLock, Storage

T = TypeVar("T")

MARKER = ".toilray-store"
SHA256_KEY = "toilray-sha256"
EXECUTABLE_KEY = "toilray-executable"
CHUNK = 32 << 20  # bytes per ranged GET and per hashing step: the memory a transfer needs
DEFAULT_LEASE_SECONDS = 60.0


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class _Verifier:
    """Hashes a download and compares it with what the object says it holds."""

    def __init__(self, stat: ObjectStat, enabled: bool) -> None:
        self._expected_sha = stat.metadata.get(SHA256_KEY) if enabled else None
        self._expected_md5 = stat.md5 if enabled and self._expected_sha is None else None
        self._digest: Any = None
        if self._expected_sha is not None:
            self._digest = hashlib.sha256()
        elif self._expected_md5 is not None:
            self._digest = hashlib.md5(usedforsecurity=False)

    def update(self, data: bytes) -> None:
        if self._digest is not None:
            self._digest.update(data)

    def check(self, url: str) -> None:
        if self._digest is None:
            return
        if self._expected_sha is not None:
            actual, expected = self._digest.hexdigest(), self._expected_sha
        else:
            actual, expected = self._digest.hexdigest(), (self._expected_md5 or b"").hex()
        if actual != expected:
            raise ChecksumMismatchError(f"The download of {url} is corrupt: checksum {actual}, expected {expected}")


class _ObjectReader(io.RawIOBase):
    """A seekable read handle on an object: one ranged GET per buffer, retried on faults.

    Read front to back, it verifies the checksum when it reaches the end; after a seek the
    content is no longer seen in order and is not checked.
    """

    def __init__(self, storage: ObjectStorage, key: str, stat: ObjectStat) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._size = stat.size
        self._position = 0
        self._verifier: _Verifier | None = _Verifier(stat, storage.verify_checksums)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        target = max(0, base + offset)
        if target != self._position:
            self._verifier = None
        self._position = target
        return target

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._position >= self._size:
            if self._verifier is not None:
                verifier, self._verifier = self._verifier, None
                verifier.check(self._storage.url(self._key))
            return 0
        end = min(self._size, self._position + len(buffer))
        data = self._storage._read_range(self._key, self._position, end)
        buffer[: len(data)] = data
        if self._verifier is not None:
            self._verifier.update(data)
        self._position += len(data)
        return len(data)


class ObjectStorage(Storage):
    """A job store's keys under ``bucket/root`` of one object service."""

    def __init__(self, service: ObjectService, bucket: str, root: str, locator: str, *,
                 verify_checksums: bool = True, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.service = service
        self.bucket = bucket
        self.root = root.strip("/")
        self.locator = locator
        self.verify_checksums = verify_checksums
        self.lease_seconds = lease_seconds
        self._retry = Retrier()

    # -- names and calls ---------------------------------------------------------------------

    def _path(self, key: str) -> str:
        parts = [p for p in (self.bucket, self.root, key.strip("/")) if p]
        return "/".join(parts)

    def url(self, key: str = "") -> str:
        return f"{self.service.scheme}://{self._path(key)}"

    def _call(self, action: str, key: str, call: Callable[[], T]) -> T:
        url = self.url(key)
        try:
            return self._retry(f"{action} {url}", call)
        except Exception as exc:
            if self.service.is_access_denied(exc):
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise StorageAccessDeniedError(f"Access denied to {url} ({action}): {reason}") from None
            raise

    def _stat(self, key: str) -> ObjectStat:
        return self._call("stat", key, partial(self.service.stat, self._path(key)))

    def _read_range(self, key: str, start: int, end: int) -> bytes:
        data = self._call("read", key, partial(self.service.read_range, self._path(key), start, end))
        if len(data) != end - start:
            # A truncated answer: transient, so the caller's retry reads it again.
            raise ChecksumMismatchError(f"Short read of {self.url(key)}: {len(data)} of {end - start} bytes")
        return data

    # -- the store ---------------------------------------------------------------------------

    def create_root(self) -> bool:
        created_bucket = False
        if not self._call("look up the bucket of", "", partial(self.service.bucket_exists, self.bucket)):
            try:
                create = partial(self.service.create_bucket, self.bucket)
                created_bucket = self._call("create the bucket of", "", create)
            except StorageAccessDeniedError as exc:
                raise StorageAccessDeniedError(
                    f"The bucket {self.service.scheme}://{self.bucket} does not exist and these credentials "
                    f"may not create it; create it or use another bucket ({exc})"
                ) from None
        marker = json.dumps({"created": time.time(), "created_bucket": created_bucket}).encode()
        return self.write_bytes_once(MARKER, marker)

    def root_exists(self) -> bool:
        return self.exists(MARKER)

    def destroy(self) -> None:
        if not self._call("look up the bucket of", "", partial(self.service.bucket_exists, self.bucket)):
            return
        try:
            marker = json.loads(self.read_bytes(MARKER))
        except (FileNotFoundError, ValueError):
            marker = {}
        marker_path = self._path(MARKER)
        everything = self._call("list", "", partial(self.service.find, self._path("")))
        self._call("delete", "", partial(self.service.delete_objects, [p for p in everything if p != marker_path]))
        # The marker goes last: a destroy cut short leaves a store that can be destroyed again.
        self._call("delete", MARKER, partial(self.service.delete_objects, [marker_path]))
        with contextlib.suppress(FileNotFoundError):
            prefix = f"{self.root}/" if self.root else ""
            self._call("abort uploads under", "", partial(self.service.abort_uploads, self.bucket, prefix))
        if marker.get("created_bucket"):
            self._call("delete the bucket of", "", partial(self.service.delete_bucket, self.bucket))

    # -- small objects -----------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        try:
            self._stat(key)
        except FileNotFoundError:
            return False
        return True

    def read_bytes(self, key: str) -> bytes:
        return self._call("read", key, partial(self.service.read_all, self._path(key)))

    def _put(self, key: str, data: bytes, precondition: str | None) -> str | None:
        return self._call("write", key, partial(self.service.put_bytes, self._path(key), data, {}, precondition))

    def write_bytes(self, key: str, data: bytes) -> None:
        self._put(key, data, None)

    def write_bytes_once(self, key: str, data: bytes) -> bool:
        if self._put(key, data, CREATE_ONLY) is not None:
            return True
        # The object exists. If it holds our bytes, this was our own write: its answer was
        # lost, the write retried, and the retry failed the precondition.
        try:
            return self.read_bytes(key) == data
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        path = self._path(key)
        under = self._call("list", key, partial(self.service.find, path))
        self._call("delete", key, partial(self.service.delete_objects, [path, *under]))

    def list(self, prefix: str) -> Iterator[str]:
        return iter(self._call("list", prefix, partial(self.service.list_dir, self._path(prefix))))

    def size(self, key: str) -> int:
        return self._stat(key).size

    def is_executable(self, key: str) -> bool:
        return self._stat(key).metadata.get(EXECUTABLE_KEY) == "1"

    # -- files -------------------------------------------------------------------------------

    def put_file(self, key: str, local_path: str, executable: bool) -> None:
        metadata = {EXECUTABLE_KEY: "1" if executable else "0"}
        if self.verify_checksums:
            metadata[SHA256_KEY] = file_sha256(local_path)
        self._call("upload", key, partial(self.service.upload_file, local_path, self._path(key), metadata,
                                          self.verify_checksums))

    def _download(self, key: str, stat: ObjectStat, local_path: str) -> None:
        def attempt() -> None:
            verifier = _Verifier(stat, self.verify_checksums)
            with open(local_path, "wb") as out:
                for start in range(0, stat.size, CHUNK):
                    data = self._read_range(key, start, min(stat.size, start + CHUNK))
                    verifier.update(data)
                    out.write(data)
            verifier.check(self.url(key))

        # Each range is retried by itself; a corrupt whole is downloaded again a few times.
        Retrier(attempts=3)(f"download {self.url(key)}", attempt)

    def get_file(self, key: str, local_path: str, allow_link: bool) -> None:
        # Always a download of its own: no local read-only copy exists to link to.
        stat = self._stat(key)
        self._download(key, stat, local_path)
        os.chmod(local_path, 0o755 if stat.metadata.get(EXECUTABLE_KEY) == "1" else 0o644)

    def open_read(self, key: str) -> IO[bytes]:
        return io.BufferedReader(_ObjectReader(self, key, self._stat(key)), buffer_size=CHUNK)

    @contextlib.contextmanager
    def open_write(self, key: str, executable: bool = False) -> Iterator[IO[bytes]]:
        # Staged on local disk: the upload can then be retried whole and checksummed first.
        fd, staging = tempfile.mkstemp(prefix="toilray-upload-")
        os.close(fd)
        try:
            with open(staging, "wb") as handle:
                yield handle
            self.put_file(key, staging, executable)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)

    # -- the leader lock ---------------------------------------------------------------------

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        return self._call("read", key, partial(self.service.read_versioned, self._path(key)))

    def put_conditional(self, key: str, data: bytes, precondition: str) -> str | None:
        return self._put(key, data, precondition)

    def acquire_leader_lock(self, key: str, owner: str) -> LeaderLock:
        return acquire_lease(self, key, owner, self.lease_seconds, self.locator)


def check_root(root: str, locator: str) -> None:
    if any(part in (".", "..") for part in root.split("/")):
        raise StorageConfigurationError(f"The prefix of '{locator}' may not contain '.' or '..' parts")
