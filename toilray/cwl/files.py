"""CWL File and Directory objects kept in the job store.

Between steps a CWL file lives only in the job store. Its location says where:

- ``toilfile:<file id>``: one job store file (the ID ends with the file's basename, so tools
  that derive ``basename`` from the location get the right one);
- ``toildir:<manifest id>[/<sub/path>]``: a directory. Its manifest, itself a job store file,
  maps each relative path to a file ID (or ``None`` for an empty directory); a location with a
  sub-path names a directory inside it.

The leader imports the workflow's inputs, workers turn locations into local paths before
running a tool (files come through the node cache) and store the outputs after it, and the
leader copies the final outputs out for cwltool to move into ``--outdir``.
"""

from __future__ import annotations

import io
import json
import os
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any

from cwltool.stdfsaccess import StdFsAccess
from cwltool.utils import visit_class

from toilray.jobStores.jobStore import JobStore
from toilray.lib import urls
from toilray.lib.files import build_tree

FILE_SCHEME = "toilfile:"
DIR_SCHEME = "toildir:"

Manifest = dict[str, str | None]


def is_stored(location: str) -> bool:
    return location.startswith((FILE_SCHEME, DIR_SCHEME))


def is_literal(location: str) -> bool:
    """cwltool names File and Directory literals (given by contents or listing) ``_:<uuid>``."""
    return location.startswith("_:")


def file_location(file_id: str) -> str:
    return FILE_SCHEME + file_id


def file_id_of(location: str) -> str:
    return location[len(FILE_SCHEME):]


def split_dir_location(location: str) -> tuple[str, str]:
    """``toildir:files/<uuid>/<name>/a/b`` -> (manifest ID, "a/b")."""
    parts = location[len(DIR_SCHEME):].split("/")
    return "/".join(parts[:3]), "/".join(parts[3:])


def local_path(location: str) -> str | None:
    if location.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlsplit(location).path)
    if "://" not in location and not is_stored(location) and not location.startswith("_:"):
        return location
    return None


def _basename(obj: dict[str, Any]) -> str:
    if obj.get("basename"):
        return str(obj["basename"])
    path = urllib.parse.unquote(urllib.parse.urlsplit(str(obj["location"])).path)
    return os.path.basename(path.rstrip("/"))


class ManifestCache:
    """Reads directory manifests once per process."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._manifests: dict[str, Manifest] = {}

    def get(self, manifest_id: str) -> Manifest:
        if manifest_id not in self._manifests:
            with self.store.open_file(manifest_id) as stream:
                self._manifests[manifest_id] = json.load(stream)
        return self._manifests[manifest_id]

    def subtree(self, location: str) -> Manifest:
        """The entries below a ``toildir:`` location, relative to it."""
        manifest_id, sub = split_dir_location(location)
        entries = self.get(manifest_id)
        if not sub:
            return entries
        prefix = sub + "/"
        return {path[len(prefix):]: value for path, value in entries.items() if path.startswith(prefix)}


def write_manifest(store: JobStore, basename: str, entries: Manifest) -> str:
    key, opener = store.write_file_stream(basename or "dir")
    with opener as stream:
        stream.write(json.dumps(entries, sort_keys=True).encode())
    return DIR_SCHEME + key


def listing_of(manifests: ManifestCache, location: str) -> list[dict[str, Any]]:
    """The direct entries of a stored directory, as CWL objects with stored locations."""
    entries = manifests.subtree(location)
    names: dict[str, dict[str, Any]] = {}
    for path, value in sorted(entries.items()):
        head, _, rest = path.partition("/")
        if rest or value is None:
            names.setdefault(head, {"class": "Directory", "location": f"{location.rstrip('/')}/{head}",
                                    "basename": head})
        else:
            names[head] = {"class": "File", "location": file_location(value), "basename": head}
    return list(names.values())


# -- leader: importing inputs and exporting outputs ----------------------------------------------


def check_local_inputs(job_order: Any) -> None:
    """Raise WorkflowException naming the first local input File or Directory that is missing."""
    from cwltool.errors import WorkflowException

    for obj in walk_files(job_order):
        location = str(obj.get("location", ""))
        path = local_path(location) if location and not is_literal(location) else None
        if path is None:
            continue
        wanted = os.path.isdir if obj["class"] == "Directory" else os.path.isfile
        if not wanted(path):
            raise WorkflowException(f"Input {obj['class'].lower()} not found: {path}")


def import_files(store: JobStore, job_order: Any, base_dir: str) -> None:
    """Put every File and Directory the input object names into the job store, in place."""
    imported: dict[str, str] = {}

    def import_file(obj: dict[str, Any]) -> None:
        location = obj.get("location")
        if not location or is_stored(location) or is_literal(location):
            return
        obj["basename"] = _basename(obj)
        if location not in imported:
            file_id = urls.import_url(store, location, base_dir)
            if file_id is None:
                raise FileNotFoundError(f"Input file not found: {location}")
            imported[location] = file_location(str(file_id))
        obj["location"] = imported[location]
        obj.pop("path", None)
        obj.pop("dirname", None)

    def import_dir(obj: dict[str, Any]) -> None:
        location = obj.get("location")
        if location and not is_stored(location) and not is_literal(location):
            path = local_path(location)
            if path is None or not os.path.isdir(path):
                raise FileNotFoundError(f"Input directory not found: {location}")
            obj["basename"] = _basename(obj)
            entries = store_tree(path, store.write_file)
            obj["location"] = write_manifest(store, obj["basename"], entries)
            obj.pop("path", None)
            stored_listing(obj, obj["location"], entries)
            return
        for entry in obj.get("listing", ()):
            visit(entry)

    def visit(obj: Any) -> None:
        if isinstance(obj, dict):
            if obj.get("class") == "File":
                import_file(obj)
                for secondary in obj.get("secondaryFiles", ()):
                    visit(secondary)
                return
            if obj.get("class") == "Directory":
                import_dir(obj)
                return
            for value in obj.values():
                visit(value)
        elif isinstance(obj, list):
            for value in obj:
                visit(value)

    visit(job_order)


def stored_listing(obj: dict[str, Any], location: str, entries: Manifest, prefix: str = "") -> None:
    """Point the entries of a directory's listing (at any depth) into its stored manifest."""
    for entry in obj.get("listing", ()):
        name = entry.get("basename") or ""
        rel = f"{prefix}{name}"
        entry.pop("path", None)
        entry.pop("dirname", None)
        if entry.get("class") == "File" and entries.get(rel):
            entry["location"] = file_location(str(entries[rel]))
        elif entry.get("class") == "Directory":
            entry["location"] = f"{location}/{rel}"
            stored_listing(entry, location, entries, rel + "/")


def store_tree(root: str, store_file: Callable[[str], str]) -> Manifest:
    """The manifest of the tree at ``root``; ``store_file(path)`` stores one file, giving its ID."""
    entries: Manifest = {}
    for directory, dirs, names in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(directory, root)
        if not dirs and not names and rel_dir != ".":
            entries[rel_dir] = None
        for name in names:
            entries[os.path.normpath(os.path.join(rel_dir, name))] = store_file(os.path.join(directory, name))
    return entries


def export_files(store: JobStore, output: Any, staging: str) -> None:
    """Copy every stored File and Directory of ``output`` under ``staging``; point them there."""
    manifests = ManifestCache(store)

    def fresh_dir() -> str:
        path = os.path.join(staging, uuid.uuid4().hex)
        os.makedirs(path)
        return path

    def export(obj: dict[str, Any]) -> None:
        location = str(obj.get("location", ""))
        if location.startswith(FILE_SCHEME):
            path = os.path.join(fresh_dir(), _basename(obj))
            store.read_file(file_id_of(location), path, allow_link=False)
            obj["location"] = "file://" + urllib.parse.quote(path)
        elif location.startswith(DIR_SCHEME):
            path = os.path.join(fresh_dir(), _basename(obj))
            build_tree(manifests.subtree(location), path, lambda file_id, dest: store.read_file(
                file_id, dest, allow_link=False))
            obj["location"] = "file://" + urllib.parse.quote(path)
            obj.pop("listing", None)

    # visit_class goes on into each object's secondaryFiles (and a File's listing is gone).
    visit_class(output, ("File", "Directory"), export)



# -- cwltool's view of stored files ----------------------------------------------------------------


def fs_access_factory(store: JobStore) -> type[StdFsAccess]:
    """``make_fs_access`` for cwltool (a class it instantiates with a base directory): reads
    ``toilfile:``/``toildir:`` locations from ``store``."""
    manifests = ManifestCache(store)

    class BoundFsAccess(JobStoreFsAccess):
        def __init__(self, basedir: str) -> None:
            super().__init__(basedir, store, manifests)

    return BoundFsAccess


class JobStoreFsAccess(StdFsAccess):
    """What cwltool does to files (open, exists, glob, listdir) for stored locations too."""

    def __init__(self, basedir: str, store: JobStore, manifests: ManifestCache) -> None:
        super().__init__(basedir)
        self.store = store
        self.manifests = manifests

    def _dir_entries(self, location: str) -> Manifest | None:
        try:
            entries = self.manifests.subtree(location)
        except FileNotFoundError:
            return None
        return entries if entries or not split_dir_location(location)[1] else None

    def glob(self, pattern: str) -> list[str]:
        if is_stored(pattern):
            return [pattern] if self.exists(pattern) else []
        return super().glob(pattern)

    def open(self, fn: str, mode: str) -> IO[Any]:
        if fn.startswith(FILE_SCHEME):
            if any(flag in mode for flag in "wa+"):
                raise PermissionError(f"{fn} is in the job store and cannot be written")
            stream = self.store.open_file(file_id_of(fn))
            return stream if "b" in mode else io.TextIOWrapper(stream, encoding="utf-8")
        return super().open(fn, mode)

    def exists(self, fn: str) -> bool:
        if fn.startswith(FILE_SCHEME):
            return self.store.file_exists(file_id_of(fn))
        if fn.startswith(DIR_SCHEME):
            return self._dir_entries(fn) is not None
        return super().exists(fn)

    def size(self, fn: str) -> int:
        if fn.startswith(FILE_SCHEME):
            return self.store.file_size(file_id_of(fn))
        return super().size(fn)

    def isfile(self, fn: str) -> bool:
        if fn.startswith(FILE_SCHEME):
            return self.store.file_exists(file_id_of(fn))
        if fn.startswith(DIR_SCHEME):
            return False
        return super().isfile(fn)

    def isdir(self, fn: str) -> bool:
        if fn.startswith(DIR_SCHEME):
            return self._dir_entries(fn) is not None
        if fn.startswith(FILE_SCHEME):
            return False
        return super().isdir(fn)

    def listdir(self, fn: str) -> list[str]:
        if fn.startswith(DIR_SCHEME):
            return [entry["location"] for entry in listing_of(self.manifests, fn)]
        return super().listdir(fn)

    def join(self, path: str, *paths: str) -> str:
        if is_stored(path):
            return "/".join([path.rstrip("/"), *paths])
        return super().join(path, *paths)

    def realpath(self, path: str) -> str:
        return path if is_stored(path) else super().realpath(path)


def walk_files(obj: Any) -> Iterator[dict[str, Any]]:
    """Every File and Directory object in a CWL value, outermost first."""
    if isinstance(obj, dict):
        if obj.get("class") in ("File", "Directory"):
            yield obj
            for key in ("secondaryFiles", "listing"):
                for entry in obj.get(key, ()):
                    yield from walk_files(entry)
            return
        for value in obj.values():
            yield from walk_files(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from walk_files(value)
