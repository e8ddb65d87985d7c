"""The job store: the durable record of a workflow, enough to resume it after any crash.

Layout (the same keys on every storage back end)::

    workflow.json        written last when the store is created: workflow ID, root job ID,
                         the script's module name and code paths. Its absence means the store
                         was never fully created.
    unstarted            written when the store is created, deleted once workflow.json is: a
                         store that holds it was made by toilray for a workflow that never
                         started, so a new run replaces it (no --restart, no clean needed).
    start                the initial job graph (pickled list of JobSpec), written once.
    commits/<jobID>      a job's CommitRecord: its return value, the successors it created,
                         its file deletions. Written once, atomically; it *is* the job's done
                         marker. Restart replays these records to rebuild the graph. The jobs
                         one task commits together may share one object under their names
                         (hard links, on a local store): a dict of each one's pickled record.
    failures/<jobID>     the latest failure report of a job (text), for users and `status`.
    logs/<jobID>.<n>     what attempt n of a job printed (its end, up to --maxLogFileSize), if anything.
    stats/<uuid>.parquet the per-job statistics (--stats) one leader session recorded; see toilray.stats.
    files/<uuid>/<name>  global files; the key is the FileID. Read-only once written.
    shared/<name>        files imported with sharedFileName, and what the CWL runner keeps for its
                         workers and for --restart (the loaded schema, the imported inputs).
    leader.lock          held by the running leader; a second leader is refused.
    status.json          the leader's latest counts and state, rewritten at most every second,
                         so that `toilray status` never has to read the job records.
    config.pickle        the Config of the latest leader session, written when it opens the
                         store: what ``jobStore.config`` gives a job.
    kill                 present when `toilray kill` asked the leader to stop.
    tmp/                 staging area for atomic writes (local stores).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any

from toilray.exceptions import (
    JobStoreExistsException,
    JobStoreLockedException,
    NoSuchFileException,
    NoSuchJobStoreException,
)
from toilray.jobStores.abstractJobStore import AbstractJobStore
from toilray.jobStores.storage import LeaderLock, Storage
from toilray.protocol import CommitRecord, JobSpec

logger = logging.getLogger(__name__)

WORKFLOW_KEY = "workflow.json"
UNSTARTED_KEY = "unstarted"
START_KEY = "start"
LOCK_KEY = "leader.lock"
STATUS_KEY = "status.json"
CONFIG_KEY = "config.pickle"
KILL_KEY = "kill"
COMMITS = "commits"
FAILURES = "failures"
LOGS = "logs"
# Commit groups kept unpickled: a group is some 18 KB, and its members are read close together.
_GROUPS_KEPT = 256
STATS = "stats"
FILES = "files"
SHARED = "shared"
# A global file's ID (its key): what new_file_key makes. The call cache finds IDs in values by it.
FILE_ID_PATTERN = r"files/[0-9a-f]{32}/[^/\x00]+"


# What looks like a locator's kind ('fil:', 's4:'): a path has a '/' or '.' before any ':'.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def parse_locator(locator: str) -> tuple[str, str]:
    """Split a job store locator into (kind, rest).

    Kinds: 'file' ('file:/x', 'file:///x' and bare paths), 's3' ('s3://bucket/prefix'),
    'aws' ('aws:REGION:BUCKET'), 'gs' ('gs://bucket/prefix'), 'google' ('google:PROJECT:BUCKET').
    """
    if locator.startswith("file://"):
        return "file", locator[len("file://") :]
    if locator.startswith("file:"):
        return "file", locator[len("file:") :]
    for kind in ("s3://", "gs://", "aws:", "google:"):
        if locator.startswith(kind):
            return kind.rstrip(":/"), locator[len(kind) :]
    scheme = _SCHEME.match(locator)
    if "://" in locator or scheme:
        kind = f" '{scheme.group()}'" if scheme else ""
        raise NoSuchJobStoreException(
            locator, f"unknown job store type{kind} (use file:PATH, a plain path, s3://BUCKET/PREFIX or "
                     "gs://BUCKET/PREFIX; a path with ':' in its first part needs './' in front)"
        )
    return "file", locator


def open_storage(locator: str, verify_checksums: bool = True) -> Storage:
    """The storage back end of a locator; ``verify_checksums`` applies to object stores."""
    kind, rest = parse_locator(locator)
    if not rest:
        raise NoSuchJobStoreException(locator, "the locator names no path or bucket")
    if kind != "file":
        from toilray.backends.storage.locators import open_job_store

        return open_job_store(kind, rest, locator, verify_checksums)
    from toilray.backends.storage.local import LocalStorage

    return LocalStorage(os.path.expanduser(rest), locator)


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One job of the workflow as its records tell it (for the WES server's tasks)."""

    job_id: str
    name: str
    finished: bool  # committed: it ran to its end and never runs again
    failure: str | None  # its latest failure report, if an attempt failed
    logs: tuple[tuple[int, str], ...]  # what its attempts printed, oldest first


class JobStore(AbstractJobStore):
    """Typed operations on a workflow's records; see the module docstring for the layout."""

    def __init__(self, locator: str, verify_checksums: bool = True) -> None:
        self.locator = locator
        self.verify_checksums = verify_checksums
        self._storage = open_storage(locator, verify_checksums)
        self._meta: dict[str, Any] | None = None
        # The shared records of jobs committed together, by the storage's identity of their one
        # object: a restart, and the resolution of a follow-on's promises, read the members one
        # after another, and unpickling the whole group for each cost 64 times the work.
        self._groups: OrderedDict[Hashable, dict[str, bytes]] = OrderedDict()

    # -- the workflow ------------------------------------------------------------------------

    def initialize(self) -> None:
        """Create the (empty) store for a new workflow; refuse a store that exists, unless its
        workflow never started (then nothing in it can be resumed, and it is replaced)."""
        try:
            created = self._storage.create_root()
            if not created and self._is_abandoned():
                logger.info("Replacing the job store %s: its workflow never started", self.locator)
                self._storage.destroy()
                created = self._storage.create_root()
        except FileNotFoundError as exc:
            raise NoSuchJobStoreException(self.locator, str(exc)) from None
        if not created:
            raise JobStoreExistsException(self.locator)
        self._storage.write_bytes(UNSTARTED_KEY, b"")

    def _is_abandoned(self) -> bool:
        return (self._storage.exists(UNSTARTED_KEY) and not self.is_started()
                and not self.leader_is_running())

    def write_start(self, meta: dict[str, Any], initial_specs: list[JobSpec]) -> None:
        """Record the initial graph, then the workflow metadata that makes the store complete."""
        meta = dict(meta, created=time.time())
        self._storage.write_bytes(START_KEY, pickle.dumps(initial_specs, protocol=pickle.HIGHEST_PROTOCOL))
        self._storage.write_bytes(WORKFLOW_KEY, json.dumps(meta, indent=1).encode())
        self._storage.delete(UNSTARTED_KEY)
        self._meta = meta

    def is_started(self) -> bool:
        return self._storage.exists(WORKFLOW_KEY)

    def root_exists(self) -> bool:
        """Whether anything is at the locator, even a store whose creation never finished."""
        return self._storage.root_exists()

    def exists(self) -> bool:
        return self._storage.root_exists() and self._storage.exists(WORKFLOW_KEY)

    def meta(self) -> dict[str, Any]:
        if self._meta is None:
            if not self._storage.root_exists():
                raise NoSuchJobStoreException(self.locator)
            try:
                self._meta = json.loads(self._storage.read_bytes(WORKFLOW_KEY))
            except FileNotFoundError:
                raise NoSuchJobStoreException(
                    self.locator, "it holds no workflow (it was never fully created)"
                ) from None
        return self._meta

    def update_meta(self, **changes: Any) -> None:
        meta = dict(self.meta(), **changes)
        self._storage.write_bytes(WORKFLOW_KEY, json.dumps(meta, indent=1).encode())
        self._meta = meta

    def write_config(self, config: Any) -> None:
        """Record the leader session's ``Config`` (for ``jobStore.config`` in its jobs)."""
        self._storage.write_bytes(CONFIG_KEY, pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))

    @property
    def config(self) -> Any:
        """The ``Config`` of the latest leader session, read afresh (a worker process outlives
        sessions); NoSuchJobStoreException before any leader opened the store."""
        try:
            return pickle.loads(self._storage.read_bytes(CONFIG_KEY))
        except FileNotFoundError:
            raise NoSuchJobStoreException(self.locator, "no leader has opened it yet") from None

    def initial_specs(self) -> list[JobSpec]:
        return pickle.loads(self._storage.read_bytes(START_KEY))

    def lock_leader(self) -> LeaderLock:
        owner = f"pid {os.getpid()} on {socket.gethostname()}"
        return self._storage.acquire_leader_lock(LOCK_KEY, owner)

    def destroy(self) -> None:
        self._storage.destroy()

    def leader_is_running(self) -> bool:
        """Whether a live leader holds the lock (probing it takes and drops it at once)."""
        try:
            probe = self._storage.acquire_leader_lock(LOCK_KEY, "toilray status probe")
        except JobStoreLockedException:
            return True
        probe.release()
        return False

    # -- status and kill ---------------------------------------------------------------------

    def write_status(self, status: dict[str, Any]) -> None:
        self._storage.write_bytes(STATUS_KEY, json.dumps(status).encode())

    def read_status(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._storage.read_bytes(STATUS_KEY))
        except FileNotFoundError:
            return None

    def request_kill(self) -> None:
        self._storage.write_bytes(KILL_KEY, f"{time.time()}".encode())

    def kill_requested(self) -> bool:
        return self._storage.exists(KILL_KEY)

    def clear_kill(self) -> None:
        self._storage.delete(KILL_KEY)

    # -- job commits -------------------------------------------------------------------------

    def commit(self, record: CommitRecord) -> bool:
        """Make a finished job durable; False if it had already been committed."""
        data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        return self._storage.write_bytes_once(f"{COMMITS}/{record.job_id}", data)

    def commit_all(self, records: list[CommitRecord]) -> list[bool]:
        """``commit`` for each record, in order, in one write where the storage can share it."""
        if len(records) > 1:
            group = {r.job_id: pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records}
            created = self._storage.write_bytes_once_shared(
                [f"{COMMITS}/{r.job_id}" for r in records], pickle.dumps(group, protocol=pickle.HIGHEST_PROTOCOL))
            if created is not None:
                return created
        return [self.commit(record) for record in records]

    def uncommit(self, job_id: str) -> None:
        """Forget a job's commit (a checkpoint about to rerun, or its discarded subtree)."""
        self._storage.delete(f"{COMMITS}/{job_id}")

    def is_committed(self, job_id: str) -> bool:
        return self._storage.exists(f"{COMMITS}/{job_id}")

    def read_commit(self, job_id: str) -> CommitRecord | None:
        key = f"{COMMITS}/{job_id}"
        try:
            identity = self._storage.identity(key)
            group = None if identity is None else self._groups.get(identity)
            if group is None:
                data, identity = self._storage.read_bytes_identified(key)
                record = pickle.loads(data)
                if not isinstance(record, dict):
                    return record
                group = record
                if identity is not None:
                    self._groups[identity] = group
                    if len(self._groups) > _GROUPS_KEPT:
                        self._groups.popitem(last=False)
            else:
                self._groups.move_to_end(identity)
        except FileNotFoundError:
            return None
        return pickle.loads(group[job_id])

    def committed_ids(self) -> Iterator[str]:
        return self._storage.list(COMMITS)

    def result_bytes(self, job_id: str) -> bytes:
        record = self.read_commit(job_id)
        if record is None:
            raise NoSuchFileException(f"{COMMITS}/{job_id}", "the return value of an unfinished job")
        return record.result

    def record_failure(self, job_id: str, report: str) -> None:
        self._storage.write_bytes(f"{FAILURES}/{job_id}", report.encode())

    def clear_failure(self, job_id: str) -> None:
        self._storage.delete(f"{FAILURES}/{job_id}")

    def write_log(self, job_id: str, attempt: int, text: str) -> None:
        self._storage.write_bytes(f"{LOGS}/{job_id}.{attempt}", text.encode())

    def read_logs(self, job_id: str) -> list[tuple[int, str]]:
        """Every kept log of a job's attempts, oldest first."""
        attempts = sorted(int(name.rsplit(".", 1)[1]) for name in self._storage.list(LOGS)
                          if name.startswith(f"{job_id}."))
        return [(n, self._storage.read_bytes(f"{LOGS}/{job_id}.{n}").decode(errors="replace")) for n in attempts]

    def job_summaries(self) -> list[JobSummary]:
        """Every job the workflow has created so far, with whether it finished, failed, and its logs:
        the initial graph and what each finished job added, in creation order; then the jobs a
        JobSource gave (the CWL runner's), known only by their commit or failure records."""
        committed = set(self.committed_ids())
        failures = self.failure_reports()
        with_logs = {name.rsplit(".", 1)[0] for name in self._storage.list(LOGS)}
        summaries: list[JobSummary] = []
        seen: set[str] = set()

        def walk(pending: list[tuple[str, str]]) -> None:
            while pending:
                job_id, name = pending.pop(0)
                if job_id in seen:
                    continue
                seen.add(job_id)
                record = self.read_commit(job_id) if job_id in committed else None
                if record is not None:
                    pending.extend((spec.id, spec.display_name or spec.name) for spec in record.new_specs)
                    name = name or record.name
                summaries.append(JobSummary(job_id, name or "job", record is not None, failures.get(job_id),
                                            tuple(self.read_logs(job_id)) if job_id in with_logs else ()))

        walk([(spec.id, spec.display_name or spec.name) for spec in self.initial_specs()])
        for job_id in sorted((committed | set(failures)) - seen):
            walk([(job_id, "")])
        return summaries

    def failed_ids(self) -> Iterator[str]:
        return self._storage.list(FAILURES)

    def failure_reports(self) -> dict[str, str]:
        """Job ID -> latest report, for `status --failed`; one cleared meanwhile (a retry succeeded) is left out."""
        reports = {}
        for job_id in self.failed_ids():
            try:
                reports[job_id] = self._storage.read_bytes(f"{FAILURES}/{job_id}").decode(errors="replace")
            except FileNotFoundError:
                continue
        return reports

    # -- statistics --------------------------------------------------------------------------

    def write_stats(self, table: bytes) -> None:
        """Add one leader session's statistics (a Parquet table) beside those of earlier sessions."""
        self._storage.write_bytes(f"{STATS}/{uuid.uuid4().hex}.parquet", table)

    def stats_tables(self) -> list[bytes]:
        """Every session's statistics table, in a stable order, for `toilray stats`."""
        return [self._storage.read_bytes(f"{STATS}/{name}") for name in sorted(self._storage.list(STATS))]

    # -- files -------------------------------------------------------------------------------

    @staticmethod
    def new_file_key(basename: str) -> str:
        safe = basename.replace("/", "_") or "file"
        return f"{FILES}/{uuid.uuid4().hex}/{safe}"

    def check_file_key(self, file_id: str) -> str:
        if not file_id.startswith(f"{FILES}/") or ".." in file_id.split("/"):
            raise NoSuchFileException(file_id)
        return file_id

    def _check_writable_key(self, key: str) -> str:
        if key.startswith(f"{SHARED}/"):
            return self.shared_key(key[len(SHARED) + 1 :])
        return self.check_file_key(key)

    def write_file(self, local_path: str, executable: bool | None = None, basename: str | None = None) -> str:
        key = self.new_file_key(basename or os.path.basename(local_path))
        if executable is None:
            executable = os.access(local_path, os.X_OK)
        self.write_file_to(key, local_path, executable)
        return key

    def write_file_to(self, key: str, local_path: str, executable: bool) -> None:
        """Copy a local file in under a key chosen beforehand (new_file_key or shared_key), as imports do."""
        self._storage.put_file(self._check_writable_key(key), local_path, executable)

    def write_file_stream(
        self, basename: str | None, executable: bool = False
    ) -> tuple[str, AbstractContextManager[IO[bytes]]]:
        key = self.new_file_key(basename or "stream")
        return key, self.open_file_for_writing(key, executable)

    def open_file_for_writing(self, key: str, executable: bool = False) -> AbstractContextManager[IO[bytes]]:
        """Stream into a key chosen beforehand (afresh on each retry of a download); all or nothing appears."""
        return self._storage.open_write(self._check_writable_key(key), executable)

    def read_file(self, file_id: str, local_path: str, allow_link: bool) -> None:
        key = self.check_file_key(file_id)
        try:
            self._storage.get_file(key, local_path, allow_link)
        except FileNotFoundError:
            raise NoSuchFileException(file_id) from None

    def open_file(self, file_id: str) -> IO[bytes]:
        key = self.check_file_key(file_id)
        try:
            return self._storage.open_read(key)
        except FileNotFoundError:
            raise NoSuchFileException(file_id) from None

    def file_exists(self, file_id: str) -> bool:
        return self._storage.exists(self.check_file_key(file_id))

    def file_size(self, file_id: str) -> int:
        try:
            return self._storage.size(self.check_file_key(file_id))
        except FileNotFoundError:
            raise NoSuchFileException(file_id) from None

    def file_is_executable(self, file_id: str) -> bool:
        return self._storage.is_executable(self.check_file_key(file_id))

    def delete_file(self, file_id: str) -> None:
        """Remove a global file (its whole per-file directory); idempotent."""
        key = self.check_file_key(file_id)
        self._storage.delete(key.rsplit("/", 1)[0])

    def file_ids(self) -> list[str]:
        """The ID of every global file in the store, for `toilray debug-file`."""
        return [f"{FILES}/{entry}/{name}" for entry in self._storage.list(FILES)
                for name in self._storage.list(f"{FILES}/{entry}")]

    def shared_key(self, name: str) -> str:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"Invalid shared file name {name!r}")
        return f"{SHARED}/{name}"

    def write_shared(self, name: str, data: bytes) -> None:
        """Create or replace a shared file by name: state the CWL runner keeps for its workers."""
        self._storage.write_bytes(self.shared_key(name), data)

    def read_shared(self, name: str) -> bytes:
        """A shared file's content; NoSuchFileException when it was never written."""
        key = self.shared_key(name)
        try:
            return self._storage.read_bytes(key)
        except FileNotFoundError:
            raise NoSuchFileException(key) from None
