"""The call cache: results of jobs kept across runs and machines, keyed by content.

One module for every front end. A job that may be cached describes what determines its
result as a :class:`CallIdentity` (``Job.callIdentity``: Python jobs, CWL tools; a WDL task
job builds one the same way), and the worker asks the :class:`CallCache` for an entry under
its key before running it. The key rule lives here, in :func:`callKey`:

* ``kind`` and ``code``: the front end's code identity. For a Python function it is
  :func:`codeIdentity`: the digest of its bytecode, constants, names, defaults and closure
  (recursively into nested functions), so editing the function invalidates its entries while
  editing a comment does not; functions it calls are not followed. For a CWL tool it is the
  tool document with the inherited requirements cwltool puts in its own cache key.
* ``arguments``: encoded canonically (dicts and sets in sorted order). A job store file in them
  (a ``FileID``, or a string that is exactly a file's ID) counts by the SHA-256 of its content,
  never by its ID, path or modification time: a file imported again under a new ID is the same
  input, a file changed in place is a new one.
* ``environment``: requirements where they change the result (accelerators; cores, memory and
  disk do not, as in cwltool, so raising memory after an out-of-memory failure keeps the
  entries) and the container image digest where one is used.

An entry is the job's commit record (its return value, and the successors it made, if any)
and the job store files the record names, directly or inside a small file it names (a CWL
directory manifest), stored content-addressed. Layout under the cache locator::

    toilray-call-cache-v1/entries/<key>    header line, SHA-256 of the payload, the payload
    toilray-call-cache-v1/blobs/<sha256>   file contents, one copy per distinct content

Safety: blobs are written before the entry, each by an atomic write (a rename on a local
disk, a single PUT on an object store), and an entry is created only if absent, so concurrent
runs writing the same key converge on one entry. An entry is verified on read (the payload's
digest) and so is every blob (its name is its digest); a corrupt or partial entry is a miss,
reported once, and deleted so that the recomputed result replaces it.

A job that made successors is cached as its own run: on a hit the same successors are made
again (with fresh IDs) and each is looked up in the cache on its own. A restored file keeps
its ID (IDs are random and unique, so one names the same content in every job store).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pickle
import pickletools
import re
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from toilray.exceptions import ToilrayError
from toilray.fileStores import FileID
from toilray.jobStores.jobStore import FILE_ID_PATTERN, JobStore, open_storage, parse_locator
from toilray.jobStores.storage import Storage
from toilray.protocol import CommitRecord

logger = logging.getLogger("toilray.worker")

ROOT = "toilray-call-cache-v1"
ENTRIES = "entries"
BLOBS = "blobs"
_HEADER = b"toilray-call-cache-entry-1\n"
# Files up to this size that an entry names are searched for the IDs of further files.
_SCAN_LIMIT = 1 << 20
_KEY = re.compile(r"^[0-9a-f]{64}$")
_FILE_ID = re.compile(FILE_ID_PATTERN)


class CallCacheError(ToilrayError):
    """The call cache cannot be opened or used (a bad locator, an unreachable store)."""


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """What determines a job's result; see the module docstring for each part."""

    kind: str
    code: str
    arguments: Any
    environment: Any = None


# -- the key rule ------------------------------------------------------------------------------


def codeIdentity(obj: Any) -> str:
    """The digest of a function's (or a class's, or a callable object's) code."""
    digest = hashlib.sha256()
    _code_of(obj, digest, set())
    return digest.hexdigest()


def _code_of(obj: Any, digest: Any, seen: set[int]) -> None:
    if id(obj) in seen:
        digest.update(b"<seen>")
        return
    seen.add(id(obj))
    if isinstance(obj, types.MethodType):
        _code_of(obj.__func__, digest, seen)
    elif isinstance(obj, types.FunctionType):
        digest.update(f"function {obj.__module__}.{obj.__qualname__}\0".encode())
        _code_object(obj.__code__, digest)
        digest.update(_encoded((obj.__defaults__, obj.__kwdefaults__), _no_files))
        for cell in obj.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(contents):
                _code_of(contents, digest, seen)
            else:
                digest.update(_encoded(contents, _no_files))
    elif isinstance(obj, type):
        digest.update(f"class {obj.__module__}.{obj.__qualname__}\0".encode())
        for klass in obj.__mro__:
            if klass.__module__.startswith("toilray.") or klass is object:
                continue
            for name, member in sorted(vars(klass).items()):
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if isinstance(member, types.FunctionType | property):
                    digest.update(name.encode() + b"\0")
                    for part in (member.fget, member.fset) if isinstance(member, property) else (member,):
                        if part is not None:
                            _code_of(part, digest, seen)
    elif hasattr(obj, "func") and hasattr(obj, "args"):  # functools.partial
        _code_of(obj.func, digest, seen)
        digest.update(_encoded((obj.args, obj.keywords), _no_files))
    else:
        _code_of(type(obj), digest, seen)


def _code_object(code: types.CodeType, digest: Any) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_argcount, code.co_kwonlyargcount,
                        code.co_flags)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_object(const, digest)
        else:
            digest.update(repr(const).encode() + b"\0")


def _no_files(file_id: str) -> str | None:
    return None


def callKey(identity: CallIdentity, fileDigest: Callable[[str], str | None]) -> str:
    """The cache key of a call: the SHA-256 of its identity, encoded canonically, with each
    job store file in it replaced by ``fileDigest(fileID)`` (its content's SHA-256; None for
    a string that only looks like a file ID)."""
    digest = hashlib.sha256()
    for part in (identity.kind, identity.code, identity.arguments, identity.environment):
        digest.update(_encoded(part, fileDigest))
    return digest.hexdigest()


def _encoded(value: Any, file_digest: Callable[[str], str | None]) -> bytes:
    out: list[bytes] = []
    _encode(value, out, file_digest, set())
    return b"".join(out)


def _encode(value: Any, out: list[bytes], file_digest: Callable[[str], str | None], active: set[int]) -> None:
    if isinstance(value, str):
        found = file_digest(str(value)) if isinstance(value, FileID) or _FILE_ID.fullmatch(value) else None
        if found is not None:
            executable = getattr(value, "executable", False)
            out.append(f"F{found}:{int(bool(executable))};".encode())
        else:
            data = value.encode("utf-8", "surrogatepass")
            out.append(b"S%d:" % len(data) + data)
    elif value is None or isinstance(value, bool | int | float | complex):
        out.append(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, bytes | bytearray):
        out.append(b"B%d:" % len(value) + bytes(value))
    elif id(value) in active:
        out.append(b"<cycle>")
    else:
        active.add(id(value))
        try:
            _encode_container(value, out, file_digest, active)
        finally:
            active.discard(id(value))


def _encode_container(value: Any, out: list[bytes], file_digest: Callable[[str], str | None],
                      active: set[int]) -> None:
    if isinstance(value, list | tuple):
        out.append(b"L" if isinstance(value, list) else b"T")
        out.append(b"%d[" % len(value))
        for item in value:
            _encode(item, out, file_digest, active)
        out.append(b"]")
    elif isinstance(value, dict):
        pairs = sorted((_encoded_in(k, file_digest, active), _encoded_in(v, file_digest, active))
                       for k, v in value.items())
        out.append(b"D%d{" % len(pairs) + b"".join(k + v for k, v in pairs) + b"}")
    elif isinstance(value, set | frozenset):
        items = sorted(_encoded_in(item, file_digest, active) for item in value)
        out.append(b"E%d{" % len(items) + b"".join(items) + b"}")
    elif isinstance(value, types.FunctionType | types.MethodType | type):
        out.append(f"C{codeIdentity(value)};".encode())
    else:
        kind = type(value)
        out.append(f"O{kind.__module__}.{kind.__qualname__}(".encode())
        if dataclasses.is_dataclass(value):
            state: Any = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        elif hasattr(value, "__getstate__") and not isinstance(value, type):
            state = value.__getstate__()
        else:
            state = getattr(value, "__dict__", None)
        if state is None:
            state = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        _encode(state, out, file_digest, active)
        out.append(b")")


def _encoded_in(value: Any, file_digest: Callable[[str], str | None], active: set[int]) -> bytes:
    out: list[bytes] = []
    _encode(value, out, file_digest, active)
    return b"".join(out)


# -- the cache ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedFile:
    digest: str
    size: int
    executable: bool


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """One entry, as ``toilray cache list`` shows it."""

    key: str
    name: str
    created: float
    size: int  # the entry itself and the files it holds
    files: int


class CallCache:
    """The entries and blobs under a cache locator (a path, ``s3://``, ``gs://``)."""

    def __init__(self, locator: str, create: bool = True) -> None:
        self.locator = locator
        kind, rest = parse_locator(locator)
        if kind == "file":
            path = os.path.abspath(os.path.expanduser(rest))
            if create:
                try:
                    os.makedirs(path, exist_ok=True)
                except OSError as exc:
                    raise CallCacheError(f"Cannot create the call cache directory {path}: {exc}") from None
            inner = f"file:{os.path.join(path, ROOT)}"
        else:
            inner = f"{locator.rstrip('/')}/{ROOT}"
        # The cache's own location, opened with the job stores' storage layer (it is no job store).
        self._location: Storage = open_storage(inner)
        if create:
            self._location.create_root()
        self._digests: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self._location.root_exists()

    # -- keys --------------------------------------------------------------------------------

    def key(self, identity: CallIdentity, store: JobStore) -> str:
        return callKey(identity, lambda file_id: self.file_digest(store, file_id))

    def file_digest(self, store: JobStore, file_id: str) -> str | None:
        """The SHA-256 of a job store file's content (None if there is no such file); files
        are immutable, so each is read once per process."""
        memo = (store.locator, file_id)
        with self._lock:
            if memo in self._digests:
                return self._digests[memo]
        try:
            digest = hashlib.sha256()
            with store.open_file(file_id) as stream:
                while block := stream.read(1 << 20):
                    digest.update(block)
            found: str | None = digest.hexdigest()
        except (FileNotFoundError, ToilrayError):
            found = None
        with self._lock:
            self._digests[memo] = found
        return found

    # -- reading -----------------------------------------------------------------------------

    def lookup(self, key: str, store: JobStore, report: Callable[[str], None]) -> CommitRecord | None:
        """The entry's commit record with its files placed in ``store``; None on a miss.

        A corrupt entry or blob is reported through ``report`` (once: it is deleted) and is a miss.
        """
        try:
            data = self._location.read_bytes(f"{ENTRIES}/{key}")
        except FileNotFoundError:
            return None
        entry = _decode_entry(data)
        if entry is None:
            self._corrupt(key, "its content does not match its checksum (truncated or changed)", report)
            return None
        files: dict[str, CachedFile] = entry["files"]
        for file_id, cached in files.items():
            if store.file_exists(file_id):
                continue
            problem = self._restore(file_id, cached, store)
            if problem:
                self._corrupt(key, problem, report)
                return None
        return pickle.loads(entry["record"])

    def _restore(self, file_id: str, cached: CachedFile, store: JobStore) -> str | None:
        blob = f"{BLOBS}/{cached.digest}"
        with tempfile.TemporaryDirectory(prefix="toilray-cache-") as scratch:
            local = os.path.join(scratch, "blob")
            try:
                self._location.get_file(blob, local, allow_link=True)
            except FileNotFoundError:
                return f"its file {os.path.basename(file_id)} is missing"
            if _sha256_of(local) != cached.digest:
                self._location.delete(blob)
                return f"its file {os.path.basename(file_id)} is corrupt (checksum mismatch)"
            store.write_file_to(file_id, local, cached.executable)
        return None

    def _corrupt(self, key: str, why: str, report: Callable[[str], None]) -> None:
        self._location.delete(f"{ENTRIES}/{key}")
        report(f"Call cache entry {key[:16]} in {self.locator} is unusable, so the job runs again: {why}")

    # -- writing -----------------------------------------------------------------------------

    def store(self, key: str, name: str, record: CommitRecord, store: JobStore) -> bool:
        """Keep a finished job's record and the files it names; False if an entry was there."""
        if self._location.exists(f"{ENTRIES}/{key}"):
            return False
        files: dict[str, CachedFile] = {}
        pending = list(_file_ids_in(record))
        while pending:
            file_id = pending.pop()
            if file_id in files or not store.file_exists(file_id):
                continue
            with tempfile.TemporaryDirectory(prefix="toilray-cache-") as scratch:
                local = os.path.join(scratch, "file")
                store.read_file(file_id, local, allow_link=True)
                digest = _sha256_of(local)
                size = os.path.getsize(local)
                blob = f"{BLOBS}/{digest}"
                if not self._location.exists(blob):
                    self._location.put_file(blob, local, False)
                if size <= _SCAN_LIMIT:
                    with open(local, "rb") as handle:
                        pending.extend(_file_ids_in_text(handle.read().decode("utf-8", "replace")))
            files[file_id] = CachedFile(digest, size, store.file_is_executable(file_id))
        stored = dataclasses.replace(record, deleted_files=[])
        payload = pickle.dumps({"name": name, "created": time.time(), "files": files,
                                "record": pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL)},
                               protocol=pickle.HIGHEST_PROTOCOL)
        data = _HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        return self._location.write_bytes_once(f"{ENTRIES}/{key}", data)

    # -- managing ----------------------------------------------------------------------------

    def entries(self) -> Iterator[EntryInfo]:
        """Every readable entry (a corrupt one is listed with the name '(corrupt)')."""
        for key in sorted(self._location.list(ENTRIES)):
            if not _KEY.match(key):
                continue
            try:
                data = self._location.read_bytes(f"{ENTRIES}/{key}")
            except FileNotFoundError:
                continue
            entry = _decode_entry(data)
            if entry is None:
                yield EntryInfo(key, "(corrupt)", 0.0, len(data), 0)
                continue
            files: dict[str, CachedFile] = entry["files"]
            yield EntryInfo(key, entry["name"], entry["created"], len(data) + sum(f.size for f in files.values()),
                            len(files))

    def entry_files(self, key: str) -> dict[str, CachedFile]:
        """The files of an entry by job store file ID (none for a corrupt or missing entry)."""
        try:
            entry = _decode_entry(self._location.read_bytes(f"{ENTRIES}/{key}"))
        except FileNotFoundError:
            return {}
        return {} if entry is None else dict(entry["files"])

    def blob_sizes(self) -> dict[str, int]:
        return {name: self._location.size(f"{BLOBS}/{name}") for name in self._location.list(BLOBS)}

    def referenced_blobs(self) -> set[str]:
        found: set[str] = set()
        for key in self._location.list(ENTRIES):
            with contextlib.suppress(FileNotFoundError):
                entry = _decode_entry(self._location.read_bytes(f"{ENTRIES}/{key}"))
                if entry is not None:
                    found.update(f.digest for f in entry["files"].values())
        return found

    def delete_entry(self, key: str) -> None:
        self._location.delete(f"{ENTRIES}/{key}")

    def collect_garbage(self) -> tuple[int, int]:
        """Delete blobs no entry names; return how many and their bytes."""
        referenced = self.referenced_blobs()
        count = freed = 0
        for name, size in self.blob_sizes().items():
            if name not in referenced:
                self._location.delete(f"{BLOBS}/{name}")
                count += 1
                freed += size
        return count, freed

    def clear(self) -> None:
        self._location.destroy()


def _decode_entry(data: bytes) -> dict[str, Any] | None:
    """The entry's payload, or None when it is not whole and unchanged."""
    if not data.startswith(_HEADER):
        return None
    rest = data[len(_HEADER):]
    checksum, newline, payload = rest.partition(b"\n")
    if not newline or hashlib.sha256(payload).hexdigest().encode() != checksum:
        return None
    try:
        entry = pickle.loads(payload)
    except Exception:
        return None
    return entry if isinstance(entry, dict) and "record" in entry else None


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _strings_in(data: bytes) -> Iterator[str]:
    """Every string a pickle holds (file IDs are strings wherever they are in a value)."""
    try:
        for _, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                yield arg
    except Exception:
        yield data.decode("latin-1")


def _file_ids_in_text(text: str) -> Iterator[str]:
    for match in _FILE_ID.finditer(text):
        yield match.group(0)


def _file_ids_in(record: CommitRecord) -> Iterator[str]:
    """The IDs of the job store files a commit record names: in its value, in the bodies of
    the successors it made."""
    for data in (record.result, *(spec.body for spec in record.new_specs)):
        for text in _strings_in(data):
            yield from _file_ids_in_text(text)


def replayed(record: CommitRecord, job_id: str) -> CommitRecord | None:
    """A cached record made the record of job ``job_id``: the successors it made get fresh IDs
    (so that two hits of one entry in a workflow make distinct jobs). None when an ID cannot
    be replaced in place (a successor's chosen ID of another length than a fresh one), or when
    the record depends on a job it did not make."""
    mapping = {record.job_id: job_id}
    for spec in record.new_specs:
        mapping[spec.id] = uuid.uuid4().hex
        for service in spec.services:
            mapping[service.id] = uuid.uuid4().hex
    for service in record.services:
        mapping[service.id] = uuid.uuid4().hex
    if any(not spec.promise_deps <= mapping.keys() for spec in record.new_specs) or \
            not record.result_deps <= mapping.keys():
        # A promise of a job of the cached run outside this record: no such job in this run.
        return None
    data = pickle.dumps(dataclasses.replace(record, job_id=""), protocol=pickle.HIGHEST_PROTOCOL)
    if len(mapping) > 1:
        if any(len(old) != len(new) for old, new in mapping.items()):
            return None
        for old, new in mapping.items():
            data = data.replace(old.encode(), new.encode())
    result: CommitRecord = pickle.loads(data)
    result.job_id = job_id
    return result
