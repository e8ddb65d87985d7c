"""Running a workflow from Python, without a script's command line: in a notebook, a server.

``run(job, jobStore, **options)`` runs the workflow and returns the root job's value;
``start(...)`` returns at once with a :class:`Run` whose leader works in a thread of this
process, so the caller (a Jupyter kernel, a WES server) stays free. Both go through
:class:`toilray.common.Toil`, the one leader implementation; options are Toil's, by name.
"""

from __future__ import annotations

import contextvars
import os
import threading
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Any

from toilray.common import Toil
from toilray.exceptions import BadOptionError, JobException, WorkflowKilledException
from toilray.job import Job
from toilray.jobStores.jobStore import JobStore
from toilray.options import get_default_options

__all__ = ["Run", "RunStatus", "makeOptions", "run", "start"]

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"


def makeOptions(jobStore: str | os.PathLike[str], **options: Any) -> Namespace:
    """Toil's default options for ``jobStore`` with ``options`` (Toil's names: ``restart``,
    ``maxCores``, ``rayAddress``, ``logLevel``, ...) set; an unknown name is a BadOptionError."""
    namespace = get_default_options(jobStore)
    unknown = sorted(set(options) - set(vars(namespace)))
    if unknown:
        raise BadOptionError(f"unknown option(s) {', '.join(unknown)}: options take Toil's names, "
                             "for example restart=True, maxCores=2, logLevel='INFO'")
    for name, value in options.items():
        setattr(namespace, name, value)
    return namespace


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands. ``state`` is one of running, completed, failed, cancelled; the counts
    are those the leader last recorded in the job store (about every second)."""

    state: str
    finished: int = 0
    running: int = 0
    queued: int = 0
    failed: list[str] = field(default_factory=list)


class Run:
    """A workflow running in a thread of this process (see :func:`start`)."""

    def __init__(self, job: Job | None, options: Namespace) -> None:
        if not options.restart and not isinstance(job, Job):
            raise JobException(f"a new run needs a Job, not {type(job).__name__}; give restart=True to resume one")
        self.jobStore: str = options.jobStore
        self._job = None if options.restart else job
        self._options = options
        self._done = threading.Event()
        self._opened = threading.Event()
        self._store: JobStore | None = None
        self._value: Any = None
        self._error: BaseException | None = None
        self._cancel_requested = False
        # The caller's context goes with the leader: a Jupyter kernel keeps there which cell is
        # running, so that the progress bar and failed jobs' logs show in the cell that started the run.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._lead,),
                                        name=f"toilray leader for {self.jobStore}", daemon=True)
        self._thread.start()

    def _lead(self) -> None:
        try:
            with Toil(self._options) as toil:
                self._store = toil.jobStore
                self._opened.set()
                if self._cancel_requested:
                    self._store.request_kill()
                self._value = toil.restart() if self._job is None else toil.start(self._job)
        except BaseException as exc:
            self._error = exc
        finally:
            self._opened.set()
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run ends (or ``timeout`` seconds pass); whether it has ended."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The root job's value once the run ends; the run's error (FailedJobsException, ...)
        raised here when it failed. TimeoutError when it is still running after ``timeout``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the workflow in {self.jobStore} is still running")
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self, timeout: float | None = None) -> bool:
        """Stop the run as ``toilray kill`` does: running jobs are killed, finished ones stay
        recorded, and the store can be resumed with ``restart=True``. Whether it has stopped
        within ``timeout`` seconds."""
        self._cancel_requested = True
        self._opened.wait()
        if self._store is not None and not self._done.is_set():
            self._store.request_kill()
        return self._done.wait(timeout)

    def status(self) -> RunStatus:
        if self._done.is_set():
            if self._error is None:
                state = COMPLETED
            elif isinstance(self._error, WorkflowKilledException) and self._cancel_requested:
                state = CANCELLED
            else:
                state = FAILED
        else:
            state = RUNNING
        recorded = (self._store.read_status() if self._store is not None else None) or {}
        return RunStatus(state, recorded.get("finished", 0), recorded.get("running", 0), recorded.get("queued", 0),
                         list(recorded.get("failed", [])))

    def __repr__(self) -> str:
        status = self.status()
        return (f"<toilray run of {self.jobStore}: {status.state}, {status.finished} finished, "
                f"{status.running} running, {status.queued} queued, {len(status.failed)} failed>")


def start(job: Job | None, jobStore: str | os.PathLike[str], **options: Any) -> Run:
    """Start the workflow rooted at ``job`` in ``jobStore`` (or resume it: ``restart=True``,
    ``job`` may then be None) and return at once; options are Toil's, by name."""
    return Run(job, makeOptions(jobStore, **options))


def run(job: Job | None, jobStore: str | os.PathLike[str], **options: Any) -> Any:
    """Run the workflow and return the root job's value, as ``Job.Runner.startToil`` does.

    An interrupt (a kernel's stop button) cancels the run, leaving the store to restart.
    """
    handle = start(job, jobStore, **options)
    try:
        return handle.result()
    except KeyboardInterrupt:
        handle.cancel()
        raise
