"""Runs jobs inside a Ray task, and services inside Ray actors: the worker side of toilray.

A task runs one job, or a small batch of quick jobs with the same requirements one after the
other (the leader decides; it saves a Ray round trip per job). For each job the worker
unpickles the body with its promises resolved, runs it with a FileStore (``toilray.job``'s
``load_job`` and ``run_job``), and commits what it did in one atomic write to the job store
*before* reporting success. A job that already has a commit record is never run again. The
jobs of a batch commit together when the batch has run (see ``_Commits``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import ray

from toilray import serialize
from toilray.callCache import CallCache, replayed
from toilray.deferred import DeferredFunctions, run_orphaned
from toilray.exceptions import TRACEBACK_VARIABLE, JobCodeImportError, ToilrayError
from toilray.fileStores.cache import NodeCache
from toilray.fileStores.fileStore import FileStore
from toilray.job import Job, call_identity, load_job, requirements_of, run_job, service_host_job
from toilray.jobStores.jobStore import JobStore
from toilray.lib.ray_node import NODE_OWNS_SIGTERM
from toilray.options import clean_applies
from toilray.protocol import CommitRecord, JobSpec, Outcome, TaskItem, WorkerContext
from toilray.realtimeLogger import install_sender
from toilray.requirements import Requirements

_HOSTNAME = socket.gethostname()
_node_name: str | None = None
_stores: dict[str, JobStore] = {}
_call_caches: dict[str, CallCache] = {}
_prepared_for: str | None = None


def node_name() -> str:
    """The node this worker runs on, as stats name it: its host name and its address in the Ray
    cluster (machines of a cluster may share a host name; nodes on one host share it always)."""
    global _node_name
    if _node_name is None:
        _node_name = f"{_HOSTNAME} {ray.util.get_node_ip_address()}"
    return _node_name


def _leave_sigterm_to_the_node(_signum: int, _frame: object) -> None:
    """SIGTERM on a node that ends itself on it: nothing to do here (see prepare_process)."""


def prepare_process(ctx: WorkerContext) -> None:
    """Once per worker process and run of a workflow: code paths, environment, logging."""
    global _prepared_for
    if _prepared_for == ctx.run_id:
        return
    if os.environ.get(NODE_OWNS_SIGTERM) and threading.current_thread() is threading.main_thread():
        # On a node of toilray.lib.ray_node, a scheduler's SIGTERM (cancel, time limit) ends the
        # whole node: Ray's own handler would end this process first, and the leader would take
        # the lost node for a failed job. A handler, not SIG_IGN: the jobs' programs get Python's
        # default disposition back when they start.
        signal.signal(signal.SIGTERM, _leave_sigterm_to_the_node)
    if ctx.leader_env is not None:
        # As if started from the leader: its variables (Ray's workers serve one run only, so
        # nothing leaks between runs), its PYTHONPATH's modules, its TMPDIR for temp files.
        os.environ.update(ctx.leader_env)
        for path in reversed(ctx.leader_env.get("PYTHONPATH", "").split(os.pathsep)):
            if path and path not in sys.path:
                sys.path.insert(0, path)
        tempfile.tempdir = None
    for path in reversed(ctx.code_paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    serialize.set_main_module_name(ctx.main_module, is_leader=False)
    serialize.set_main_definitions(ctx.main_definitions)
    os.environ.update(ctx.env)
    worker_logger = logging.getLogger("toilray.worker")
    worker_logger.setLevel(ctx.log_level)
    if not worker_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname).1s] [%(name)s] %(message)s"))
        worker_logger.addHandler(handler)
        worker_logger.propagate = False
    install_sender(ctx.realtime_log_address)
    _prepared_for = ctx.run_id


def sees_workflow(locator: str, workflow_id: str) -> bool:
    """Whether this node sees the job store at ``locator`` holding the workflow ``workflow_id``
    (a ``file:`` store on a file system this node shares with the leader's)."""
    try:
        return bool(JobStore(locator).meta().get("workflowID") == workflow_id)
    except (OSError, ToilrayError, ValueError):
        return False


def store_for(ctx: WorkerContext) -> JobStore:
    store = _stores.get(ctx.locator)
    if store is None:
        store = _stores[ctx.locator] = JobStore(ctx.locator, verify_checksums=ctx.verify_checksums)
    return store


@contextlib.contextmanager
def _captured_output(path: str, enabled: bool) -> Iterator[None]:
    """Send this process's stdout and stderr (also of subprocesses) to ``path``."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for handle in (fd, *saved):
            os.close(handle)


def _log_tail(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as handle:
            if limit > 0:
                handle.seek(max(0, os.path.getsize(path) - limit))
            elif limit < 0:
                return handle.read(-limit).decode(errors="replace")
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _maybe_arm_bad_worker(ctx: WorkerContext) -> threading.Timer | None:
    if ctx.bad_worker <= 0 or random.random() >= ctx.bad_worker:
        return None
    timer = threading.Timer(random.uniform(0, ctx.bad_worker_interval), os.kill, (os.getpid(), signal.SIGKILL))
    timer.daemon = True
    timer.start()
    return timer


def _process_dir(ctx: WorkerContext, kind: str = "worker") -> str:
    """This process's scratch area: the jobs' working directory and its log file."""
    path = ctx.dirs.process(kind, os.getpid())
    os.makedirs(os.path.join(path, "cwd"), exist_ok=True)
    return path


def _empty_directory(path: str) -> None:
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def _run_one(ctx: WorkerContext, item: TaskItem, values: dict[str, bytes],
             commits: _Commits | None = None) -> tuple[Outcome, bytes | None]:
    store = store_for(ctx)
    existing = store.read_commit(item.job_id)
    if existing is not None:
        for file_id in existing.deleted_files:
            store.delete_file(file_id)
        return Outcome.from_record(existing), existing.result
    dirs = ctx.dirs
    process_dir = _process_dir(ctx)
    run_orphaned(dirs.deferred)
    log_path = os.path.join(process_dir, "job.log")
    with open(log_path, "wb"):
        pass
    cache = NodeCache(dirs.cache) if ctx.caching else None
    file_store = FileStore(store, item.name, process_dir, ctx.launch_dir, DeferredFunctions(dirs.deferred), cache)
    started, cpu_started = time.time(), time.process_time()
    succeeded = False
    bad_timer = _maybe_arm_bad_worker(ctx)
    try:
        with _captured_output(log_path, ctx.capture_output):
            try:
                outcome, result = _execute(ctx, store, item, values, file_store, os.path.join(process_dir, "cwd"),
                                           commits)
            finally:
                file_store.close()
        succeeded = outcome.ok
        if os.path.getsize(log_path):
            # Every attempt's output is kept in the job store (most jobs print nothing).
            tail = _log_tail(log_path, ctx.max_log_size)
            store.write_log(item.job_id, item.attempt, tail)
            if not outcome.ok or ctx.return_all_logs:
                outcome.log = tail
    finally:
        if bad_timer is not None:
            bad_timer.cancel()
        if clean_applies(ctx.clean_work_dir, succeeded):
            if file_store.attempt_dir is not None:
                shutil.rmtree(file_store.attempt_dir, ignore_errors=True)
            _empty_directory(os.path.join(process_dir, "cwd"))
    outcome.started = started
    outcome.wall_time = time.time() - started
    outcome.cpu_time = time.process_time() - cpu_started
    outcome.memory_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome.node = node_name()
    outcome.pid = os.getpid()
    return outcome, result


def _call_cache(ctx: WorkerContext, job: Job) -> CallCache | None:
    """The run's call cache, if this job may use it (a checkpoint may not: its reruns must run)."""
    if ctx.call_cache is None or not (job.cache or ctx.cache_all_jobs) or job.checkpoint:
        return None
    cache = _call_caches.get(ctx.call_cache)
    if cache is None:
        cache = _call_caches[ctx.call_cache] = CallCache(ctx.call_cache)
    return cache


def _load_job(item: TaskItem, context: serialize.PromiseContext, ctx: WorkerContext) -> Job:
    try:
        return load_job(item.body, context, ctx.defaults)
    except ImportError as exc:
        # Typically a node of a cluster that lacks the workflow's own modules while others have
        # them: which node it is, is what the user needs to know.
        raise JobCodeImportError(
            f"the job's code cannot be imported on node {node_name()}: {type(exc).__name__}: {exc} (toilray "
            "ships a workflow's own modules to the nodes of a cluster unless --disableAutoDeployment; "
            "otherwise they must be on every node)") from exc


def _cache_key(cache: CallCache, job: Job, store: JobStore, file_store: FileStore) -> str | None:
    try:
        return cache.key(call_identity(job, file_store), store)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError) as exc:
        file_store.logToMaster(f"Job {job.jobName} is not cached: its arguments cannot be read for a cache key "
                               f"({type(exc).__name__}: {exc})", logging.WARNING)
        return None


def _cache_warning(file_store: FileStore) -> Callable[[str], None]:
    return lambda text: file_store.logToMaster(text, logging.WARNING)


def _execute(
    ctx: WorkerContext, store: JobStore, item: TaskItem, values: dict[str, bytes], file_store: FileStore,
    cwd_dir: str, commits: _Commits | None,
) -> tuple[Outcome, bytes | None]:
    cache: CallCache | None = None
    key: str | None = None
    try:
        job = _load_job(item, serialize.PromiseContext(values, store.result_bytes), ctx)
        if item.resolve_requirements_only:
            return Outcome(item.job_id, ok=True, requirements=requirements_of(job)), None
        cache = _call_cache(ctx, job)
        if cache is not None:
            key = _cache_key(cache, job, store, file_store)
        if cache is not None and key is not None:
            found = cache.lookup(key, store, _cache_warning(file_store))
            hit = replayed(found, item.job_id) if found is not None else None
            if hit is not None:
                return _commit(store, hit, file_store, "hit")
        run = run_job(job, file_store, cwd_dir)
        result, result_deps = serialize.dumps(run.value)
        record = CommitRecord(
            job_id=item.job_id,
            result=result,
            result_deps=result_deps,
            new_specs=run.new_specs,
            children=run.children,
            followons=run.followons,
            deleted_files=file_store.deleted_files,
            cleanup_files=file_store.cleanup_files,
            services=run.services,
            name=item.name,
        )
    except (Exception, SystemExit) as exc:
        if not isinstance(exc, ToilrayError) or os.environ.get(TRACEBACK_VARIABLE) == "1":
            # An error toilray raises on purpose says all in its message (the job's one line).
            print(traceback.format_exc(), file=sys.stderr)
        return Outcome(item.job_id, ok=False, error=f"{type(exc).__name__}: {exc}"), None
    if commits is not None and cache is None:
        return commits.add(record, file_store), record.result
    outcome, value = _commit(store, record, file_store, "" if key is None else "miss")
    if cache is not None and key is not None and not outcome.already_committed and not record.services:
        # A job with services is not kept: they are live resources its successors use.
        try:
            cache.store(key, job.displayName or job.jobName, record, store)
        except (OSError, ToilrayError) as exc:
            file_store.logToMaster(f"Could not keep the result of job {item.name} in the call cache: {exc}",
                                   logging.WARNING)
            outcome.messages = file_store.messages
    return outcome, value


def _commit(store: JobStore, record: CommitRecord, file_store: FileStore, cache: str) -> tuple[Outcome, bytes]:
    if not store.commit(record):
        # Another attempt of this job committed first (the leader saw it as lost): keep theirs.
        winner = store.read_commit(record.job_id)
        assert winner is not None
        return Outcome.from_record(winner), winner.result
    for file_id in record.deleted_files:
        store.delete_file(file_id)
    outcome = Outcome.from_record(record, file_store.messages, already_committed=False)
    outcome.cache = cache
    return outcome, record.result


class _Commits:
    """The commit records of a batch's jobs, held until the batch has run and then written in
    one go (``JobStore.commit_all``: one file for them all on a local store, where creating a
    file costs more than the rest of a trivial job). Nothing is lost to durability: the
    leader hears of none of these jobs before ``write`` returns, and a worker that dies before
    leaves them uncommitted, to run again. A batch is of quick jobs only (the leader's rule),
    so what such a death can cost stays small. Jobs that may chain successors, or use the call
    cache, commit on their own at once (a successor must follow its parent's committed run).
    """

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._pending: list[tuple[CommitRecord, Outcome]] = []

    def add(self, record: CommitRecord, file_store: FileStore) -> Outcome:
        outcome = Outcome.from_record(record, file_store.messages, already_committed=False)
        self._pending.append((record, outcome))
        return outcome

    def write(self) -> dict[str, tuple[Outcome, bytes]]:
        """Commit every held record, then apply their file deletions; return the jobs that
        another attempt committed first (the leader saw theirs as lost), with theirs."""
        created = self._store.commit_all([record for record, _ in self._pending])
        lost: dict[str, tuple[Outcome, bytes]] = {}
        for (record, _), won in zip(self._pending, created, strict=True):
            if won:
                for file_id in record.deleted_files:
                    self._store.delete_file(file_id)
                continue
            winner = self._store.read_commit(record.job_id)
            assert winner is not None
            lost[record.job_id] = Outcome.from_record(winner), winner.result
        self._pending = []
        return lost


def _take_winner(outcome: Outcome, winner: Outcome) -> Outcome:
    """The committed attempt's outcome, with what this attempt measured of its own run."""
    for name in ("started", "wall_time", "cpu_time", "memory_kib", "node", "pid", "log"):
        setattr(winner, name, getattr(outcome, name))
    return winner


# Most jobs one task runs in a chain, so that the leader still hears back regularly.
MAX_CHAIN = 1000


class _Chain:
    """What a task knows of the graph around the jobs it runs, to find each one's lone
    successor (Toil's chaining rule): the successors the leader knew of when it issued the
    task (``planned``, each the lone successor of the one before), and the jobs the task's
    own runs made, with how many edges lead to each."""

    def __init__(self, planned: list[JobSpec]) -> None:
        self._planned = planned
        self._made: dict[str, JobSpec] = {}
        self._edges_to: Counter[str] = Counter()

    def successor(self, ctx: WorkerContext, step: int, job_id: str, outcome: Outcome, limit: Requirements | None,
                  values: dict[str, bytes]) -> TaskItem | None:
        """The lone successor of the job just run, if it can run right here, right now.

        It must wait for nothing else, fit in this task's resources, need no services, not
        be a checkpoint, and need only return values this process already has.
        """
        if not ctx.chaining or limit is None or not outcome.ok or outcome.already_committed or outcome.services:
            return None
        for new in outcome.new_specs:
            self._made[new.id] = new
            self._edges_to.update((*new.children, *new.followons))
        made = outcome.children + outcome.followons
        self._edges_to.update(made)
        if step < len(self._planned):
            known: tuple[str, ...] = (self._planned[step].id,)
        elif job_id in self._made:
            known = self._made[job_id].children + self._made[job_id].followons
        else:
            known = ()
        successors = known + made
        if len(successors) != 1:
            return None
        spec = self._planned[step] if step < len(self._planned) else self._made.get(successors[0])
        if spec is None or (spec.id in self._made and self._edges_to[spec.id] != 1):
            return None
        req = spec.requirements
        if spec.services or spec.checkpoint or req is None:
            return None
        if req.cores > limit.cores or req.memory > limit.memory or req.gpus > limit.gpus or req.disk > limit.disk:
            return None
        if req.preemptible and not limit.preemptible:
            return None
        if not spec.promise_deps <= values.keys():
            return None
        return TaskItem(spec.id, spec.name, spec.body, 1)


def run_jobs(ctx: WorkerContext, limit: Requirements | None, items: list[TaskItem], planned: list[JobSpec],
             known_values: dict[str, bytes], dep_ids: list[str], *dep_values: bytes) -> tuple[Any, ...]:
    """The Ray task body. Returns the outcomes, then each given job's pickled return value.

    The return values the jobs' promises read come as ``known_values`` (those the leader holds
    as bytes, in one argument however many) and as ``dep_values``, Ray references resolved by
    Ray (the big ones); any other is read from the job store.

    After a lone given job it may run a chain of successors, each the lone successor of the
    one before (see ``_Chain``): first the ``planned`` ones, which the leader knew of when
    it issued the task, then ones the chain's jobs made. Their outcomes follow in the list,
    their values are read from the job store by whoever needs them.
    """
    prepare_process(ctx)
    values = dict(known_values)
    values.update(zip(dep_ids, dep_values, strict=True))
    outcomes: list[Outcome] = []
    results: list[bytes | None] = []
    commits = _Commits(store_for(ctx)) if len(items) > 1 else None
    for item in items:
        outcome, result = _run_one(ctx, item, values, commits)
        outcomes.append(outcome)
        results.append(result)
    if commits is not None:
        lost = commits.write()
        for index, outcome in enumerate(outcomes):
            if outcome.job_id in lost:
                winner, results[index] = lost[outcome.job_id]
                outcomes[index] = _take_winner(outcome, winner)
    for outcome, result in zip(outcomes, results, strict=True):
        outcome.result_size = len(result) if result is not None else 0
    if len(items) == 1 and results[0] is not None:
        values[items[0].job_id] = results[0]
        chain = _Chain(planned)
        job_id, outcome = items[0].job_id, outcomes[0]
        for step in range(MAX_CHAIN):
            successor = chain.successor(ctx, step, job_id, outcome, limit, values)
            if successor is None:
                break
            outcome, result = _run_one(ctx, successor, values)
            outcome.chained = True
            outcomes.append(outcome)
            if result is None:
                break
            job_id = successor.job_id
            values[job_id] = result
    return (outcomes, *results)


class ServiceHost:
    """The actor that runs one service (the leader makes it a Ray actor class)."""

    def __init__(self, ctx: WorkerContext, name: str) -> None:
        prepare_process(ctx)
        deferred = DeferredFunctions(ctx.dirs.deferred)
        self._file_store = FileStore(store_for(ctx), name, _process_dir(ctx, "service"), ctx.launch_dir, deferred)
        self._job: Any = None
        self._service: Any = None
        self._stopped = threading.Event()

    def node(self) -> tuple[str, str]:
        """The Ray node ID of the node the service runs on, and its name (``node_name``)."""
        return ray.get_runtime_context().get_node_id(), node_name()

    def until_stopped(self) -> None:
        """Returns once ``stop`` ran: a call of this outstanding tells the leader at once when
        the actor dies instead (its process killed, its node lost)."""
        self._stopped.wait()

    def start(self, body: bytes) -> bytes:
        self._service = serialize.loads(body)
        self._job = service_host_job(self._service, self._file_store)
        return serialize.dumps(self._service.start(self._job))[0]

    def check(self) -> bool:
        return bool(self._service.check())

    def stop(self) -> None:
        try:
            self._service.stop(self._job)
        finally:
            self._file_store.close()
            self._stopped.set()
