"""Toil's ``toil.batchSystems.abstractBatchSystem``: the batch system interface and how a batch
job ended. toilray schedules on Ray itself; these are for scripts and plugins that name them."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

# The exit status of a job whose real status is not known (Toil's value).
EXIT_STATUS_UNAVAILABLE_VALUE = 255


class BatchJobExitReason(enum.IntEnum):
    FINISHED = 1  # finished successfully
    FAILED = 2  # finished, but failed
    LOST = 3  # its host went away
    KILLED = 4  # killed before it finished
    ERROR = 5  # an internal error
    MEMLIMIT = 6  # killed for going over its memory
    MISSING = 7  # vanished from the scheduler without stopping
    MAXJOBDURATION = 8  # ran longer than --maxJobDuration
    PARTITION = 9  # could not reach the job store

    @classmethod
    def to_string(cls, value: int) -> str:
        """The name of the reason ``value`` is, or the number as text."""
        try:
            return cls(value).name
        except ValueError:
            return str(value)


@dataclass
class UpdatedBatchJobInfo:
    jobID: int
    exitStatus: int = EXIT_STATUS_UNAVAILABLE_VALUE
    exitReason: BatchJobExitReason | None = None
    wallTime: float | int | None = None
    backing_id: str | None = None


class AbstractBatchSystem(ABC):
    """What Toil asks of a batch system: issue, kill, list and collect jobs."""

    @classmethod
    def supportsAutoDeployment(cls) -> bool:
        return False

    @classmethod
    def supportsWorkerCleanup(cls) -> bool:
        return False

    @abstractmethod
    def issueBatchJob(self, command: str, job_desc: Any, job_environment: dict[str, str] | None = None) -> int: ...

    @abstractmethod
    def killBatchJobs(self, jobIDs: list[int]) -> None: ...

    @abstractmethod
    def getIssuedBatchJobIDs(self) -> list[int]: ...

    @abstractmethod
    def getRunningBatchJobIDs(self) -> dict[int, float]: ...

    @abstractmethod
    def getUpdatedBatchJob(self, maxWait: int) -> UpdatedBatchJobInfo | None: ...

    @abstractmethod
    def shutdown(self) -> None: ...

    def getSchedulingStatusMessage(self) -> str | None:
        return None

    def setEnv(self, name: str, value: str | None = None) -> None:
        """Set an environment variable for the jobs (as --setEnv does)."""
        raise NotImplementedError(f"{type(self).__name__} does not run jobs: toilray runs them as Ray tasks")


class InsufficientSystemResources(Exception):
    """A job asks for more of a resource than the batch system has."""

    def __init__(self, requirer: Any, resource: str, available: float | None = None) -> None:
        self.requirer = requirer
        self.resource = resource
        self.available = available
        have = "" if available is None else f", but only {available} is available"
        super().__init__(f"The job {requirer} is requesting {getattr(requirer, resource, '?')} {resource}{have}")
