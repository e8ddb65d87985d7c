"""Exceptions of toilray, with Toil's names so that ``except`` clauses keep working."""

from __future__ import annotations

from collections.abc import Sequence


class ToilrayError(Exception):
    """Base of every error toilray raises on purpose."""


class JobException(ToilrayError):
    """A job was used in a way Toil does not allow."""


class JobGraphDeadlockException(JobException):
    """The job graph has a cycle, several roots, or a checkpoint that is not a leaf."""


class JobPromiseConstraintError(JobException, RuntimeError):
    """A job was given a promise of a job that is not certain to have finished before it runs.

    Toil's name (a ``RuntimeError`` there too, so Toil's ``except`` clauses still catch it).
    """


class JobPicklingException(JobException):
    """A job (or service) holds an argument or attribute that cannot be pickled."""


class JobStoreError(ToilrayError):
    """A job store problem that is not one of the specific cases below."""


class JobStoreExistsException(JobStoreError):
    """A fresh workflow was started on a job store that already exists."""

    def __init__(self, locator: str) -> None:
        super().__init__(
            f"The job store '{locator}' already exists. Use --restart to resume its workflow, "
            f"or 'toilray clean {locator}' to delete it."
        )
        self.locator = locator


class NoSuchJobStoreException(JobStoreError):
    """``--restart`` (or an inspection command) named a job store that does not exist."""

    def __init__(self, locator: str, why: str = "") -> None:
        detail = f": {why}" if why else ""
        super().__init__(f"The job store '{locator}' does not exist{detail}.")
        self.locator = locator


class JobStoreLockedException(JobStoreError):
    """Another leader is already running a workflow on this job store."""


class NoSuchFileException(JobStoreError):
    """A file ID that is not (or no longer) in the job store."""

    def __init__(self, jobStoreFileID: str, customName: str | None = None, *extra: object) -> None:
        name = f" ({customName})" if customName else ""
        super().__init__(f"File '{jobStoreFileID}'{name} does not exist in the job store", *extra)
        self.jobStoreFileID = jobStoreFileID


class NoSuchJobException(JobStoreError):
    """A job ID that is not in the job store."""

    def __init__(self, jobStoreID: str) -> None:
        super().__init__(f"Job '{jobStoreID}' does not exist in the job store")
        self.jobStoreID = jobStoreID


class ConcurrentFileModificationException(JobStoreError):
    """Two writers raced on the same job store file."""

    def __init__(self, jobStoreFileID: str) -> None:
        super().__init__(f"Concurrent update to file '{jobStoreFileID}' detected.")
        self.jobStoreFileID = jobStoreFileID


class FailedJobsException(ToilrayError):
    """Raised by ``Toil.start``/``restart`` when jobs failed and nothing more can run."""

    def __init__(self, locator: str, failed_jobs: Sequence[str], exit_code: int = 1) -> None:
        self.jobStoreLocator = locator
        self.failed_jobs = list(failed_jobs)
        self.exit_code = exit_code
        names = ", ".join(self.failed_jobs)
        super().__init__(
            f"The workflow in job store '{locator}' failed: {len(self.failed_jobs)} job(s) "
            f"failed ({names}). Fix the cause and run again with --restart."
        )


class WorkflowKilledException(ToilrayError):
    """The workflow was stopped with ``toilray kill``; the job store can be resumed."""

    def __init__(self, locator: str) -> None:
        super().__init__(
            f"The workflow in job store '{locator}' was killed; resume it with --restart"
        )
        self.locator = locator


class DeadlockException(ToilrayError):
    """Only services could run for longer than ``--deadlockWait``."""


class InsufficientResourcesError(ToilrayError):
    """A job asks for more than any node of the cluster offers, or more than --maxCores etc."""


class BadOptionError(ToilrayError):
    """An option value that cannot be used."""
