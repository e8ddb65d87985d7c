"""What the leader and the workers exchange, and where a workflow keeps its files on a node.

This is the one contract between the two sides: the leader describes jobs as
:class:`JobSpec` (the analogue of Toil's JobDescription) and never unpickles ``body`` (the
user's Job object), so it never runs user code and its memory per pending job stays small.
It sends each Ray task a :class:`WorkerContext` (once per workflow) and :class:`TaskItem`\\ s;
the worker answers with one :class:`Outcome` per job, after making the job's
:class:`CommitRecord` durable. Both sides find node-local state through :class:`NodeDirs`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from toilray.requirements import Requirements

# Brackets a failed job's output in the leader's log, as Toil does.
LOG_MARK = "---TOIL WORKER OUTPUT LOG---"


def job_label(name: str, unit_name: str, job_id: str) -> str:
    """How logs and errors name a job: 'name' kind-name/instance-id, as Toil does."""
    unit = f" {unit_name}" if unit_name and unit_name != name else ""
    return f"'{name}'{unit} kind-{name}/instance-{job_id[:8]}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service of a host job: started before the host's successors, stopped after them."""

    id: str
    parent: str | None  # a service that must be up first (sub-services)
    name: str
    requirements: Requirements
    body: bytes


@dataclass(slots=True)
class JobSpec:
    id: str
    name: str
    unit_name: str
    display_name: str
    requirements: Requirements | None  # None until PromisedRequirements are resolved
    checkpoint: bool
    children: tuple[str, ...]
    followons: tuple[str, ...]
    body: bytes
    promise_deps: frozenset[str]
    services: tuple[ServiceSpec, ...] = ()

    def label(self) -> str:
        return job_label(self.name, self.unit_name, self.id)


@dataclass(slots=True)
class CommitRecord:
    """Everything a finished job changed, made durable in one atomic write.

    Its presence in the job store is the job's "done" marker: a job with a commit record
    never runs again, and the leader rebuilds the graph on ``--restart`` by replaying them.
    """

    job_id: str
    result: bytes
    result_deps: frozenset[str]
    new_specs: list[JobSpec]
    children: tuple[str, ...]
    followons: tuple[str, ...]
    deleted_files: list[str]
    cleanup_files: list[str]
    services: tuple[ServiceSpec, ...] = ()
    # The job's name, for readers of the store (jobs a JobSource gives have no spec in it).
    name: str = ""


@dataclass(frozen=True, slots=True)
class NodeDirs:
    """A workflow's node-local directories, the same on every node under ``--workDir``."""

    work_dir: str
    workflow_id: str

    @property
    def workflow(self) -> str:
        """Everything the workflow keeps on this node; removed per ``--cleanWorkDir``."""
        return os.path.join(self.work_dir, f"toilray-{self.workflow_id}")

    @property
    def deferred(self) -> str:
        """``job.defer`` registrations, one file per attempt (they outlive a killed worker)."""
        return os.path.join(self.workflow, "deferred")

    @property
    def cache(self) -> str:
        """The node cache of global files that jobs read."""
        return os.path.join(self.workflow, "cache")

    def process(self, kind: str, pid: int) -> str:
        """A worker process's scratch area ('worker' or 'service'): its jobs' files and log."""
        return os.path.join(self.workflow, f"{kind}-{pid}")


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """What every task of a workflow needs to know, shipped once per workflow."""

    locator: str
    workflow_id: str
    # New for every leader run of the workflow: a --restart may ship changed definitions.
    run_id: str
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
    # The leader's environment, for workers that were not started from it (the shared local Ray's).
    leader_env: dict[str, str] | None = None
    # An unimportable __main__'s functions and classes, by value (see toilray.serialize).
    main_definitions: dict[str, bytes] = field(default_factory=dict)
    # The call cache's locator (--callCache), and whether every job may use it (--callCacheAllJobs).
    call_cache: str | None = None
    cache_all_jobs: bool = False

    @property
    def dirs(self) -> NodeDirs:
        return NodeDirs(self.work_dir, self.workflow_id)


@dataclass(slots=True)
class TaskItem:
    """One job for a task to run; ``attempt`` counts from 1."""

    job_id: str
    name: str
    body: bytes
    attempt: int
    resolve_requirements_only: bool = False


@dataclass(slots=True)
class Outcome:
    """How one job of a task ended, with what the leader needs to go on."""

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
    cache: str = ""  # "hit" or "miss" for a job the call cache was asked about
    # The pickled return value's size: a small one the leader keeps as bytes, not as a Ray
    # reference (see toilray.leader), once it knows someone will read it.
    result_size: int = 0

    def __reduce__(self) -> tuple[type[Outcome], tuple[Any, ...]]:
        # The leader unpickles one of these per job: as positional arguments they load some 3x
        # faster, and pickle 40% smaller, than as the per-field state of a slotted dataclass.
        return Outcome, tuple(getattr(self, name) for name in _OUTCOME_FIELDS)

    @classmethod
    def from_record(cls, record: CommitRecord, messages: list[tuple[int, str]] | None = None,
                    already_committed: bool = True) -> Outcome:
        """The outcome a commit record stands for (a job that ran now, or before)."""
        return cls(
            job_id=record.job_id,
            ok=True,
            already_committed=already_committed,
            new_specs=record.new_specs,
            children=record.children,
            followons=record.followons,
            result_deps=record.result_deps,
            cleanup_files=record.cleanup_files,
            services=record.services,
            messages=messages or [],
        )


_OUTCOME_FIELDS = tuple(f.name for f in fields(Outcome))
