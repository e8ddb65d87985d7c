"""Runs jobs inside a Ray task: the worker side of toilray.

A task runs one job, or a small batch of quick jobs with the same requirements one after the
other (the leader decides; it saves a Ray round trip per job). For each job the worker
unpickles the body with its promises resolved, runs it with a FileStore, checks and describes
the successors it created, and commits everything in one atomic write to the job store
*before* reporting success. A job that already has a commit record is never run again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from toilray import serialize
from toilray.deferred import DeferredFunctions, run_orphaned
from toilray.fileStores.cache import NodeCache
from toilray.fileStores.fileStore import FileStore
from toilray.job import make_specs, service_specs
from toilray.jobspec import CommitRecord, JobSpec, ServiceSpec
from toilray.jobStores.jobStore import JobStore
from toilray.realtimeLogger import install_sender
from toilray.requirements import Requirements

_LOG_MARK = "---TOIL WORKER OUTPUT LOG---"


@dataclass(slots=True)
class WorkerContext:
    """What every task of a workflow needs to know, shipped once per workflow."""

    locator: str
    workflow_id: str
    work_dir: str
    launch_dir: str
    code_paths: list[str]
    main_module: str | None
    defaults: Requirements
    env: dict[str, str]
    max_log_size: int
    clean_work_dir: str
    bad_worker: float
    bad_worker_interval: float
    log_level: str
    capture_output: bool
    caching: bool = True
    chaining: bool = True
    return_all_logs: bool = False
    realtime_log_address: tuple[str, int] | None = None
    verify_checksums: bool = True


@dataclass(slots=True)
class TaskItem:
    job_id: str
    name: str
    body: bytes
    attempt: int
    resolve_requirements_only: bool = False


@dataclass(slots=True)
class Outcome:
    job_id: str
    ok: bool
    already_committed: bool = False
    new_specs: list[JobSpec] = field(default_factory=list)
    children: tuple[str, ...] = ()
    followons: tuple[str, ...] = ()
    result_deps: frozenset[str] = frozenset()
    cleanup_files: list[str] = field(default_factory=list)
    messages: list[tuple[int, str]] = field(default_factory=list)
    requirements: Requirements | None = None
    services: tuple[ServiceSpec, ...] = ()
    error: str = ""
    log: str = ""
    started: float = 0.0
    wall_time: float = 0.0
    cpu_time: float = 0.0
    memory_kib: int = 0
    node: str = ""
    pid: int = 0
    chained: bool = False


_HOSTNAME = socket.gethostname()
_stores: dict[str, JobStore] = {}
_prepared_for: str | None = None


def prepare_process(ctx: WorkerContext) -> None:
    """Once per worker process and workflow: code paths, environment, logging."""
    global _prepared_for
    if _prepared_for == ctx.workflow_id:
        return
    for path in reversed(ctx.code_paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    serialize.set_main_module_name(ctx.main_module, is_leader=False)
    os.environ.update(ctx.env)
    worker_logger = logging.getLogger("toilray.worker")
    worker_logger.setLevel(ctx.log_level)
    if not worker_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname).1s] [%(name)s] %(message)s"))
        worker_logger.addHandler(handler)
        worker_logger.propagate = False
    install_sender(ctx.realtime_log_address)
    _prepared_for = ctx.workflow_id


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


def outcome_from_record(record: CommitRecord) -> Outcome:
    return Outcome(
        job_id=record.job_id,
        ok=True,
        already_committed=True,
        new_specs=record.new_specs,
        children=record.children,
        followons=record.followons,
        result_deps=record.result_deps,
        cleanup_files=record.cleanup_files,
        services=record.services,
    )


def workflow_dir(work_dir: str, workflow_id: str) -> str:
    """The node-local directory of a workflow: per-process scratch areas, deferred functions."""
    return os.path.join(work_dir, f"toilray-{workflow_id}")


def deferred_dir(work_dir: str, workflow_id: str) -> str:
    return os.path.join(workflow_dir(work_dir, workflow_id), "deferred")


def cache_dir(work_dir: str, workflow_id: str) -> str:
    return os.path.join(workflow_dir(work_dir, workflow_id), "cache")


def _process_dir(ctx: WorkerContext) -> str:
    """This worker process's scratch area: the jobs' working directory and its log file."""
    path = os.path.join(workflow_dir(ctx.work_dir, ctx.workflow_id), f"worker-{os.getpid()}")
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


def _run_one(ctx: WorkerContext, item: TaskItem, values: dict[str, bytes]) -> tuple[Outcome, bytes | None]:
    store = store_for(ctx)
    existing = store.read_commit(item.job_id)
    if existing is not None:
        for file_id in existing.deleted_files:
            store.delete_file(file_id)
        return outcome_from_record(existing), existing.result
    process_dir = _process_dir(ctx)
    defer_dir = deferred_dir(ctx.work_dir, ctx.workflow_id)
    run_orphaned(defer_dir)
    log_path = os.path.join(process_dir, "job.log")
    with open(log_path, "wb"):
        pass
    deferred = DeferredFunctions(defer_dir)
    cache = NodeCache(cache_dir(ctx.work_dir, ctx.workflow_id)) if ctx.caching else None
    file_store = FileStore(store, item.name, process_dir, ctx.launch_dir, deferred, cache)
    started, cpu_started = time.time(), time.process_time()
    succeeded = False
    bad_timer = _maybe_arm_bad_worker(ctx)
    try:
        with _captured_output(log_path, ctx.capture_output):
            try:
                outcome, result = _execute(ctx, store, item, values, file_store, os.path.join(process_dir, "cwd"))
            finally:
                deferred.run()
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
        clean = ctx.clean_work_dir
        if clean == "always" or (clean == "onSuccess" and succeeded) or (clean == "onError" and not succeeded):
            if file_store.attempt_dir is not None:
                shutil.rmtree(file_store.attempt_dir, ignore_errors=True)
            _empty_directory(os.path.join(process_dir, "cwd"))
    outcome.started = started
    outcome.wall_time = time.time() - started
    outcome.cpu_time = time.process_time() - cpu_started
    outcome.memory_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome.node = _HOSTNAME
    outcome.pid = os.getpid()
    return outcome, result


def _execute(
    ctx: WorkerContext, store: JobStore, item: TaskItem, values: dict[str, bytes], file_store: FileStore,
    cwd_dir: str,
) -> tuple[Outcome, bytes | None]:
    try:
        context = serialize.PromiseContext(values, store.result_bytes)
        job = context.loads(item.body)
        job._saved = True
        if item.resolve_requirements_only:
            return Outcome(item.job_id, ok=True, requirements=job._resolved_requirements(ctx.defaults)), None
        job._fileStore = file_store
        file_store.cache_limit = job._requirement("disk", ctx.defaults)
        cwd = os.getcwd()
        try:
            os.chdir(cwd_dir)
            value = job._run(file_store)
        finally:
            os.chdir(cwd)
        job.checkJobGraphForDeadlocks()
        new_specs = make_specs(job, ctx.defaults)
        services = service_specs(job, ctx.defaults)
        result, result_deps = serialize.dumps(value)
        record = CommitRecord(
            job_id=item.job_id,
            result=result,
            result_deps=result_deps,
            new_specs=new_specs,
            children=tuple(c.jobStoreID for c in job._children),
            followons=tuple(f.jobStoreID for f in job._followOns),
            deleted_files=file_store.deleted_files,
            cleanup_files=file_store.cleanup_files,
            services=services,
        )
    except (Exception, SystemExit) as exc:
        print(traceback.format_exc(), file=sys.stderr)
        return Outcome(item.job_id, ok=False, error=f"{type(exc).__name__}: {exc}"), None
    if not store.commit(record):
        # Another attempt of this job committed first (the leader saw it as lost): keep theirs.
        winner = store.read_commit(item.job_id)
        assert winner is not None
        return outcome_from_record(winner), winner.result
    for file_id in record.deleted_files:
        store.delete_file(file_id)
    outcome = Outcome(
        job_id=item.job_id,
        ok=True,
        new_specs=new_specs,
        children=record.children,
        followons=record.followons,
        result_deps=result_deps,
        cleanup_files=record.cleanup_files,
        messages=file_store.messages,
        services=services,
    )
    return outcome, result


# Most jobs one task runs in a chain, so that the leader still hears back regularly.
_MAX_CHAIN = 1000


def _chained_successor(ctx: WorkerContext, outcome: Outcome, limit: Requirements | None,
                       values: dict[str, bytes]) -> TaskItem | None:
    """The lone successor a job just created, if it can run right here, right now.

    It must be the only new job, fit in this task's resources, need no services, not be a
    checkpoint, and need only return values this process already has.
    """
    if not ctx.chaining or limit is None or not outcome.ok or outcome.already_committed:
        return None
    if len(outcome.new_specs) != 1 or outcome.services:
        return None
    spec = outcome.new_specs[0]
    req = spec.requirements
    if (spec.services or spec.checkpoint or req is None or (spec.id,) not in (outcome.children, outcome.followons)
            or len(outcome.children) + len(outcome.followons) != 1):
        return None
    if req.cores > limit.cores or req.memory > limit.memory or req.gpus > limit.gpus or req.disk > limit.disk:
        return None
    if req.preemptible and not limit.preemptible:
        return None
    if not spec.promise_deps <= values.keys():
        return None
    return TaskItem(spec.id, spec.name, spec.body, 1)


def run_jobs(ctx: WorkerContext, limit: Requirements | None, items: list[TaskItem], dep_ids: list[str],
             *dep_values: bytes) -> tuple[Any, ...]:
    """The Ray task body. Returns the outcomes, then each given job's pickled return value.

    After the given jobs it may run a chain of successors (each the lone new job of the one
    before, see ``_chained_successor``); their outcomes follow in the list, their values are
    read from the job store by whoever needs them.
    """
    prepare_process(ctx)
    values = dict(zip(dep_ids, dep_values, strict=True))
    outcomes: list[Outcome] = []
    results: list[bytes | None] = []
    for item in items:
        outcome, result = _run_one(ctx, item, values)
        outcomes.append(outcome)
        results.append(result)
    if len(items) == 1 and results[0] is not None:
        values[items[0].job_id] = results[0]
        outcome = outcomes[0]
        for _ in range(_MAX_CHAIN):
            successor = _chained_successor(ctx, outcome, limit, values)
            if successor is None:
                break
            outcome, result = _run_one(ctx, successor, values)
            outcome.chained = True
            outcomes.append(outcome)
            if result is None:
                break
            values[successor.job_id] = result
    return (outcomes, *results)
