"""Importing files into the job store from URLs, and exporting them back out.

Sources: local paths (absolute, or relative to the directory the workflow was launched in),
``file:`` URLs, and ``http(s)://`` URLs. Destinations: local paths and ``file:`` URLs.
Data is streamed in chunks, never read whole into memory.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request

from toilray.exceptions import NoSuchFileException
from toilray.fileStores import FileID
from toilray.jobStores.jobStore import JobStore

_CHUNK = 1 << 20


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


def import_url(store: JobStore, uri: str, base_dir: str | None = None, shared_name: str | None = None) -> FileID | None:
    """Copy ``uri`` into the job store; return its FileID, or None for a shared file."""
    uri = normalize_uri(uri, base_dir=base_dir)
    path = _local_path(uri)
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Could not import '{uri}': no such file")
        executable = os.access(path, os.X_OK)
        if shared_name is not None:
            store.storage.put_file(store.shared_key(shared_name), path, executable)
            return None
        key = store.write_file(path, executable)
        return FileID(key, os.path.getsize(path), executable)
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme not in ("http", "https"):
        raise UnsupportedURLError(f"Cannot import '{uri}': the {scheme}: scheme is not supported")
    try:
        response = urllib.request.urlopen(uri, timeout=60)
    except urllib.error.HTTPError as exc:
        raise FileNotFoundError(f"Could not import '{uri}': HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FileNotFoundError(f"Could not import '{uri}': {exc.reason}") from None
    basename = os.path.basename(urllib.parse.urlparse(uri).path) or "download"
    key = store.shared_key(shared_name) if shared_name is not None else store.new_file_key(basename)
    with response, store.storage.open_write(key) as out:
        shutil.copyfileobj(response, out, _CHUNK)
    if shared_name is not None:
        return None
    return FileID(key, store.storage.size(key), False)


def export_url(store: JobStore, file_id: str, uri: str, base_dir: str | None = None) -> None:
    """Copy a job store file to ``uri`` (a local path or file: URL)."""
    uri = normalize_uri(uri, base_dir=base_dir)
    path = _local_path(uri)
    if path is None:
        raise UnsupportedURLError(f"Cannot export to '{uri}': only local paths and file: URLs are supported")
    if not store.file_exists(file_id):
        raise NoSuchFileException(file_id)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.toilray-export-{os.getpid()}"
    store.read_file(file_id, tmp, allow_link=False)
    os.replace(tmp, path)
