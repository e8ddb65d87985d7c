"""What the leader knows of a job: the analogue of Toil's JobDescription.

The leader schedules with these alone and never unpickles ``body`` (the user's Job object),
so it never runs user code and its memory per pending job stays small.
"""

from __future__ import annotations

from dataclasses import dataclass

from toilray.requirements import Requirements


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
        """How logs and errors name the job: 'name' kind-name/instance-id, as Toil does."""
        unit = f" {self.unit_name}" if self.unit_name and self.unit_name != self.name else ""
        return f"'{self.name}'{unit} kind-{self.name}/instance-{self.id[:8]}"


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
