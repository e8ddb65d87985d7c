"""WDL File and Directory values in the job store.

A stored File is ``toilwdl:GROUP/FILE_ID`` and a stored Directory ``toilwdldir:GROUP/MANIFEST_ID``
(the manifest: a JSON map of relative paths to file IDs, ``null`` for an empty directory).
A job store file ID ends with the file's name, so WDL's ``basename()`` sees the right one. GROUP
names the directory the file came from: files that were siblings stay siblings when a worker
fetches them (a task may expect an index next to its data file).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

import WDL

from toilray.exceptions import ToilrayError
from toilray.jobStores.jobStore import JobStore
from toilray.lib import urls
from toilray.lib.files import build_tree

FILE_SCHEME = "toilwdl:"
DIR_SCHEME = "toilwdldir:"


class WDLInputFileError(ToilrayError):
    """A File or Directory input names something that cannot be read."""


def is_stored(value: str) -> bool:
    return value.startswith((FILE_SCHEME, DIR_SCHEME))


def group_of(path: str) -> str:
    return hashlib.sha256(os.path.dirname(os.path.abspath(path.rstrip("/"))).encode()).hexdigest()[:12]


def split(uri: str) -> tuple[str, str]:
    """``toilwdl:GROUP/ID`` -> (GROUP, ID)."""
    body = uri.split(":", 1)[1]
    group, _, file_id = body.partition("/")
    return group, file_id


def store_file(write: Callable[[str], str], path: str) -> str:
    return f"{FILE_SCHEME}{group_of(path)}/{write(path)}"


def store_directory(write: Callable[[str], str], write_manifest: Callable[[str, bytes], str], path: str) -> str:
    """Store every file under ``path`` and a manifest of them; the Directory value."""
    root = path.rstrip("/")
    manifest: dict[str, str | None] = {}
    for top, dirs, names in os.walk(root, followlinks=True):
        relative = os.path.relpath(top, root)
        if not dirs and not names and relative != ".":
            manifest[relative] = None
        for name in names:
            manifest[os.path.normpath(os.path.join(relative, name))] = write(os.path.join(top, name))
    manifest_id = write_manifest(os.path.basename(root), json.dumps(manifest, sort_keys=True).encode())
    return f"{DIR_SCHEME}{group_of(root)}/{manifest_id}"


def manifest_writer(store: JobStore) -> Callable[[str, bytes], str]:
    def write_manifest(name: str, data: bytes) -> str:
        key, stream = store.write_file_stream(name)
        with stream as out:
            out.write(data)
        return key

    return write_manifest


class Fetcher:
    """Places stored Files and Directories under one local root, siblings in one directory."""

    def __init__(self, root: str, read: Callable[[str, str], None], read_bytes: Callable[[str], bytes],
                 flat: bool = False) -> None:
        self.root = root
        self._flat = flat
        self._read = read
        self._read_bytes = read_bytes
        self._placed: dict[str, str] = {}
        self._taken: set[str] = set()

    def _place(self, group: str, name: str) -> str:
        flat = os.path.join(self.root, name)
        if self._flat and flat not in self._taken and not os.path.lexists(flat):
            # Output files go straight into the output directory while their names are free.
            self._taken.add(flat)
            os.makedirs(self.root, exist_ok=True)
            return flat
        for index in range(1_000_000):
            folder = os.path.join(self.root, group if index == 0 else f"{group}-{index}")
            path = os.path.join(folder, name)
            if path not in self._taken:
                self._taken.add(path)
                os.makedirs(folder, exist_ok=True)
                return path
        raise AssertionError("unreachable")

    def local(self, uri: str) -> str:
        if uri in self._placed:
            return self._placed[uri]
        group, file_id = split(uri)
        path = self._place(group, os.path.basename(file_id))
        if uri.startswith(FILE_SCHEME):
            self._read(file_id, path)
        else:
            build_tree(json.loads(self._read_bytes(file_id)), path, self._read)
            path += "/"
        self._placed[uri] = path
        return path


def import_inputs(store: JobStore, inputs: WDL.Env.Bindings[WDL.Value.Base],
                  base_dir: str) -> WDL.Env.Bindings[WDL.Value.Base]:
    """The inputs with every File and Directory copied into the job store."""
    done: dict[str, str] = {}

    def write(path: str) -> str:
        return store.write_file(path)

    def rewrite(value: WDL.Value.File | WDL.Value.Directory) -> str:
        name = value.value
        if is_stored(name):
            return name
        if name in done:
            return done[name]
        if "://" in name and not name.startswith("file://"):
            try:
                file_id = urls.import_url(store, name, base_dir)
            except (OSError, ToilrayError) as exc:
                raise WDLInputFileError(f"Cannot import input {name}: {exc}") from None
            assert file_id is not None
            uri = f"{FILE_SCHEME}{group_of(name)}/{file_id}"
        else:
            path = name[len("file://"):] if name.startswith("file://") else name
            path = os.path.join(base_dir, path)
            if isinstance(value, WDL.Value.Directory):
                if not os.path.isdir(path):
                    raise WDLInputFileError(f"Input directory not found: {name}")
                uri = store_directory(write, manifest_writer(store), path)
            else:
                if not os.path.isfile(path):
                    raise WDLInputFileError(f"Input file not found: {name}")
                uri = store_file(write, path)
        done[name] = uri
        return uri

    return WDL.Value.rewrite_env_paths(inputs, rewrite)


def check_inputs(inputs: WDL.Env.Bindings[WDL.Value.Base], base_dir: str) -> None:
    """Raise WDLInputFileError for a local File or Directory input that is not there."""

    def check(value: WDL.Value.File | WDL.Value.Directory) -> str:
        name = value.value
        if "://" not in name or name.startswith("file://"):
            path = os.path.join(base_dir, name.removeprefix("file://"))
            exists = os.path.isdir(path) if isinstance(value, WDL.Value.Directory) else os.path.isfile(path)
            if not exists:
                kind = "directory" if isinstance(value, WDL.Value.Directory) else "file"
                raise WDLInputFileError(f"Input {kind} not found: {name}")
        return name

    WDL.Value.rewrite_env_paths(inputs, check)


def export_outputs(store: JobStore, outputs: WDL.Env.Bindings[WDL.Value.Base],
                   directory: str) -> WDL.Env.Bindings[WDL.Value.Base]:
    """Copy every stored File and Directory of ``outputs`` under ``directory``; the outputs
    with their local paths."""
    fetcher = Fetcher(directory, lambda file_id, path: store.read_file(file_id, path, allow_link=False),
                      lambda file_id: read_bytes(store, file_id), flat=True)

    def rewrite(value: WDL.Value.File | WDL.Value.Directory) -> str:
        if not is_stored(value.value):
            return value.value
        return fetcher.local(value.value).rstrip("/")

    return WDL.Value.rewrite_env_paths(outputs, rewrite)


def read_bytes(store: JobStore, file_id: str) -> bytes:
    with store.open_file(file_id) as stream:
        return stream.read()
