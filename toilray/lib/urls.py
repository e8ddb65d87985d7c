"""Importing files into the job store from URLs, and exporting them back out.

Sources: local paths (absolute, or relative to the directory the workflow was launched in),
``file:`` URLs, ``http(s)://``, ``s3://bucket/key`` and ``gs://bucket/key`` URLs.
Destinations: local paths, ``file:``, ``s3://`` and ``gs://`` URLs.

Data is streamed in chunks, never read whole into memory; transfers from and to object
stores pass through a local file, so that each side can be retried whole and checksummed
(unless the job store's checksum verification is switched off). An HTTP download is checked
against its Content-Length. A source that does not exist fails with FileNotFoundError
naming the URL.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from toilray.exceptions import NoSuchFileException
from toilray.fileStores import FileID
from toilray.jobStores.jobStore import JobStore

_CHUNK = 1 << 20
_OBJECT_SCHEMES = ("s3", "gs")


class UnsupportedURLError(ValueError):
    """A URL scheme toilray cannot read or write."""


def normalize_uri(uri: str, check_existence: bool = False, base_dir: str | None = None) -> str:
    """Give a scheme-less path the ``file:`` scheme and an absolute path."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme and len(parsed.scheme) > 1:
        return uri
    path = uri if os.path.isabs(uri) else os.path.join(base_dir or os.getcwd(), uri)
    path = os.path.abspath(path)
    if check_existence and not os.path.exists(path):
        raise FileNotFoundError(f"Could not find local file '{path}'")
    return "file://" + path


def _local_path(uri: str) -> str | None:
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return urllib.parse.unquote(parsed.path)
    return None


@contextmanager
def _scratch_file() -> Iterator[str]:
    """A path for a transfer's local copy, removed afterwards."""
    directory = tempfile.mkdtemp(prefix="toilray-transfer-")
    try:
        yield os.path.join(directory, "data")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _download_http(store: JobStore, uri: str, key: str) -> None:
    from toilray.backends.storage.faults import ChecksumMismatchError, Retrier

    def attempt() -> None:
        try:
            response = urllib.request.urlopen(uri, timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code not in (408, 429):
                raise FileNotFoundError(f"Could not import '{uri}': HTTP {exc.code} {exc.reason}") from None
            raise
        with response, store.open_file_for_writing(key) as out:
            expected = response.headers.get("Content-Length")
            received = 0
            while block := response.read(_CHUNK):
                out.write(block)
                received += len(block)
            # Raising inside open_write discards the partial object.
            if expected is not None and received != int(expected):
                raise ChecksumMismatchError(f"The download of '{uri}' stopped at {received} of {expected} bytes")

    Retrier(attempts=4)(f"download {uri}", attempt)


def _download_object(store: JobStore, uri: str, local_path: str) -> None:
    from toilray.backends.storage.locators import open_url

    source, key = open_url(uri, store.verify_checksums)
    try:
        source.get_file(key, local_path, allow_link=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"Could not import '{uri}': no such object (or no such bucket)") from None


def import_url(store: JobStore, uri: str, base_dir: str | None = None, shared_name: str | None = None) -> FileID | None:
    """Copy ``uri`` into the job store; return its FileID, or None for a shared file."""
    uri = normalize_uri(uri, base_dir=base_dir)
    path = _local_path(uri)
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Could not import '{uri}': no such file")
        executable = os.access(path, os.X_OK)
        if shared_name is not None:
            store.write_file_to(store.shared_key(shared_name), path, executable)
            return None
        key = store.write_file(path, executable)
        return FileID(key, os.path.getsize(path), executable)
    scheme = urllib.parse.urlparse(uri).scheme
    basename = os.path.basename(urllib.parse.urlparse(uri).path) or "download"
    key = store.shared_key(shared_name) if shared_name is not None else store.new_file_key(basename)
    executable = False
    if scheme in ("http", "https"):
        _download_http(store, uri, key)
    elif scheme in _OBJECT_SCHEMES:
        with _scratch_file() as local:
            _download_object(store, uri, local)
            executable = os.access(local, os.X_OK)
            store.write_file_to(key, local, executable)
    else:
        raise UnsupportedURLError(f"Cannot import '{uri}': the {scheme}: scheme is not supported")
    if shared_name is not None:
        return None
    return FileID(key, store.file_size(key), executable)


def export_url(store: JobStore, file_id: str, uri: str, base_dir: str | None = None) -> None:
    """Copy a job store file to ``uri``: a local path, a file:, s3:// or gs:// URL."""
    uri = normalize_uri(uri, base_dir=base_dir)
    scheme = urllib.parse.urlparse(uri).scheme
    path = _local_path(uri)
    if path is None and scheme not in _OBJECT_SCHEMES:
        raise UnsupportedURLError(f"Cannot export to '{uri}': the {scheme}: scheme is not supported")
    if not store.file_exists(file_id):
        raise NoSuchFileException(file_id)
    if path is not None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.toilray-export-{os.getpid()}"
        store.read_file(file_id, tmp, allow_link=False)
        os.replace(tmp, path)
        return
    from toilray.backends.storage.locators import open_url

    destination, key = open_url(uri, store.verify_checksums)
    with _scratch_file() as local:
        # A hard link to a local store's read-only file: no copy made (an object store's is downloaded).
        store.read_file(file_id, local, allow_link=True)
        try:
            destination.put_file(key, local, os.access(local, os.X_OK))
        except FileNotFoundError:
            raise FileNotFoundError(f"Could not export to '{uri}': no such bucket") from None
