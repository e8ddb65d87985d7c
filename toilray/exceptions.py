"""Exceptions of toilray, with Toil's names so that ``except`` clauses keep working."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence


class ToilrayError(Exception):
    """Base of every error toilray raises on purpose."""


class JobException(ToilrayError):
    """A job was used in a way Toil does not allow."""


class ToilContextManagerException(JobException):
    """``Toil.start``/``restart`` (or another method needing the open store) was called outside
    ``with Toil(options) as toil:``."""

    def __init__(self) -> None:
        super().__init__('This method cannot be called outside the "with Toil(...)" context manager.')


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


class JobStoreNotSharedError(JobStoreError):
    """A ``file:`` job store that some node of the Ray cluster does not see."""


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
    """Raised by ``Toil.start``/``restart`` when jobs failed and nothing more can run.

    Its message begins as Toil's does, and it has Toil's attributes (``jobStoreLocator``,
    ``numberOfFailedJobs``, ``exit_code``): scripts and users match on both.
    """

    def __init__(self, locator: str, failed_jobs: Sequence[str], exit_code: int = 1) -> None:
        self.jobStoreLocator = locator
        self.failed_jobs = list(failed_jobs)
        self.numberOfFailedJobs = len(self.failed_jobs)
        self.exit_code = exit_code
        names = ", ".join(self.failed_jobs)
        super().__init__(
            f"The job store '{locator}' contains {self.numberOfFailedJobs} failed jobs: {names}. "
            "Fix the cause and run again with --restart."
        )


class WorkflowKilledException(ToilrayError):
    """The workflow was stopped with ``toilray kill``; the job store can be resumed."""

    def __init__(self, locator: str) -> None:
        super().__init__(
            f"The workflow in job store '{locator}' was killed; resume it with --restart"
        )
        self.locator = locator


class WorkflowInterruptedException(KeyboardInterrupt):
    """The leader was interrupted (Ctrl-C); the job store is kept for ``--restart``.

    A KeyboardInterrupt still, so that code catching ``Exception`` does not swallow a Ctrl-C.
    """

    def __init__(self, locator: str) -> None:
        super().__init__(
            f"The workflow in job store '{locator}' was interrupted; resume it by running the same command "
            "with --restart"
        )
        self.locator = locator


class DeadlockException(ToilrayError):
    """Only services could run for longer than ``--deadlockWait``."""


class InsufficientResourcesError(ToilrayError):
    """A job asks for more than any node of the cluster offers, or more than --maxCores etc."""


class BadOptionError(ToilrayError):
    """An option value that cannot be used."""


class ContainerEngineError(ToilrayError):
    """No container engine answers, or it cannot run what a job asked for."""


class ContainerImageNotFoundError(ContainerEngineError):
    """A container image that the engine neither has nor can pull."""


class RayConnectionError(ToilrayError):
    """The Ray cluster named by --rayAddress (or RAY_ADDRESS) cannot be reached."""


class AutoscalingConfigError(ToilrayError):
    """The autoscaler configuration (--autoscalingConfig) cannot be read."""


class JobCodeImportError(ToilrayError):
    """A job's code cannot be imported on the node that was to run it."""


# Exit statuses of an uncaught error, the same for a script run with python and for `toilray`.
USAGE_ERROR = 2  # a mistake in what was asked: a bad store, option, script or address (as click uses)
WORKFLOW_FAILED = 1  # the workflow ran and did not finish
INTERRUPTED = 130  # the shell's status for a Ctrl-C

TRACEBACK_VARIABLE = "TOILRAY_TRACEBACK"


def exit_status(error: BaseException) -> int | None:
    """The exit status toilray gives an uncaught ``error``; None when it is not toilray's to
    report (a bug in a workflow script keeps Python's traceback)."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, FailedJobsException | WorkflowKilledException):
        return WORKFLOW_FAILED
    if isinstance(error, ToilrayError):
        return USAGE_ERROR
    return None


def error_report(error: BaseException) -> str:
    """What toilray prints for an uncaught ``error`` it reports: one line naming its type, or,
    with TOILRAY_TRACEBACK=1 in the environment, the traceback above that line."""
    if isinstance(error, KeyboardInterrupt):
        line = f"toilray: interrupted: {error or 'stopped by Ctrl-C'}"
    else:
        line = f"toilray: error: {type(error).__name__}: {error}"
    if os.environ.get(TRACEBACK_VARIABLE) == "1":
        return "".join(traceback.format_exception(error)) + line
    return line


def report(error: BaseException) -> int | None:
    """Print toilray's report of an uncaught ``error`` on stderr and return its exit status;
    None, with nothing printed, when it is not toilray's to report."""
    status = exit_status(error)
    if status is not None:
        print(error_report(error), file=sys.stderr)
    return status
