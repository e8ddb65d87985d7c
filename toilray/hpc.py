"""What toilray needs from an HPC scheduler (Slurm, Grid Engine, LSF), and which one a run is in.

toilray never submits one scheduler job per workflow job: it runs Ray across an allocation
(``toilray.allocation``) and lets Ray schedule the jobs, so the scheduler sees a handful of long
jobs however many jobs the workflow has. A scheduler is the small interface below; its
implementations live in ``toilray.backends.schedulers``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from toilray.exceptions import ToilrayError


class SchedulerError(ToilrayError):
    """A scheduler command failed, or its allocation cannot be read."""


@dataclass(frozen=True, slots=True)
class HostSlots:
    """One host of an allocation and what the allocation gives on it (memory in bytes; None:
    the scheduler does not say, so Ray measures the host)."""

    host: str
    cpus: int
    memory: int | None = None
    gpus: int = 0


@dataclass(frozen=True, slots=True)
class Allocation:
    """The allocation a process runs in; ``hosts[0]`` is the one the batch script runs on."""

    scheduler: str
    job_id: str
    hosts: tuple[HostSlots, ...]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """A batch job that runs ``command`` (an argument vector) on ``nodes`` whole Ray nodes of
    ``cpus`` cores each. Toil's options map onto it: ``--slurmPartition`` is ``queue``,
    ``--slurmTime`` ``time``, ``--slurmQOS`` ``qos``, ``--slurmArgs`` and the TOIL_*_ARGS
    variables ``extra_args``."""

    command: tuple[str, ...]
    nodes: int = 1
    cpus: int = 1
    memory: int | None = None  # bytes per node
    gpus: int = 0  # per node
    time: str | None = None
    queue: str | None = None
    qos: str | None = None
    job_name: str = "toilray"
    output: str | None = None
    extra_args: tuple[str, ...] = ()
    # Grid Engine: the parallel environment; LSF: whether the scheduler reads memory per slot
    # (Toil's --memoryIsProduct).
    parallel_environment: str | None = None
    memory_is_product: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)
    # Where the script writes the command's exit status (None: it execs the command).
    status_file: str | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """How to submit a batch script: the command, and the file to give it on stdin (bsub)."""

    argv: tuple[str, ...]
    stdin_path: str | None = None


# A job's state as toilray cares about it: still to run or running, or over.
PENDING, RUNNING, FINISHED = "pending", "running", "finished"


class Scheduler(ABC):
    """One HPC scheduler: reading an allocation, launching on its hosts, batch scripts."""

    #: Toil's --batchSystem name
    name: str
    #: the variable with extra submission arguments (TOIL_SLURM_ARGS ...)
    args_variable: str

    @abstractmethod
    def detect(self, environ: Mapping[str, str]) -> Allocation | None:
        """The allocation ``environ`` (a process's environment) runs in; None when not in one."""

    @abstractmethod
    def launch_command(self, allocation: Allocation, host: HostSlots, command: Sequence[str]) -> list[str]:
        """The command that runs ``command`` on ``host`` inside ``allocation`` (srun, qrsh, blaunch)."""

    @abstractmethod
    def render_script(self, request: BatchRequest) -> str:
        """The batch script for ``request``, with the scheduler's directives."""

    @abstractmethod
    def submission(self, script_path: str, request: BatchRequest) -> Submission:
        """How to submit the script at ``script_path``."""

    @abstractmethod
    def job_id(self, submit_output: str) -> str:
        """The job ID in what the submission command printed."""

    @abstractmethod
    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        """One command that cancels every job of ``job_ids``."""

    @abstractmethod
    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        """One command that reports the state of every job of ``job_ids``."""

    @abstractmethod
    def parse_status(self, returncode: int, output: str, job_ids: Sequence[str]) -> dict[str, str]:
        """Each job's state (PENDING, RUNNING, FINISHED) from ``status_command``'s exit status and
        output (stdout and stderr); a job the scheduler no longer lists has finished. Raises
        SchedulerError when the command failed for another reason (the scheduler is down)."""

    def extra_args(self, environ: Mapping[str, str]) -> list[str]:
        """The submission arguments the user's TOIL_*_ARGS variable adds."""
        return shlex.split(environ.get(self.args_variable, ""))


def schedulers() -> list[Scheduler]:
    """Every scheduler toilray knows, in the order allocations are looked for."""
    from toilray.backends.schedulers import all_schedulers

    return all_schedulers()


def by_name(name: str) -> Scheduler:
    """The scheduler of Toil's --batchSystem ``name`` (``gridengine`` is also accepted)."""
    wanted = "grid_engine" if name == "gridengine" else name
    for scheduler in schedulers():
        if scheduler.name == wanted:
            return scheduler
    raise SchedulerError(f"Unknown scheduler {name!r} (choose from slurm, grid_engine, lsf)")


def hpc_disabled(environ: Mapping[str, str]) -> bool:
    """TOILRAY_HPC=0 makes runs inside an allocation use the local Ray rules, as on a laptop."""
    return environ.get("TOILRAY_HPC", "") == "0"


def detect(environ: Mapping[str, str] | None = None) -> tuple[Scheduler, Allocation] | None:
    """The scheduler and allocation this process runs in, if any (and TOILRAY_HPC is not 0)."""
    environ = os.environ if environ is None else environ
    if hpc_disabled(environ):
        return None
    for scheduler in schedulers():
        allocation = scheduler.detect(environ)
        if allocation is not None:
            return scheduler, allocation
    return None


_COMMAND_TIMEOUT = 120.0


def run_command(argv: Sequence[str], stdin_path: str | None = None) -> tuple[int, str]:
    """Run a scheduler command; its exit status and its output (stdout, then stderr)."""
    try:
        with open(stdin_path) if stdin_path else contextlib.nullcontext() as stdin:
            done = subprocess.run(list(argv), stdin=stdin if stdin_path else subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=_COMMAND_TIMEOUT)
    except FileNotFoundError:
        raise SchedulerError(f"{argv[0]} not found: run this where the scheduler's commands are "
                             "(a login node of the cluster)") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{argv[0]} did not answer within {_COMMAND_TIMEOUT:g} s") from None
    return done.returncode, done.stdout + done.stderr


def submit(scheduler: Scheduler, request: BatchRequest, script_path: str) -> str:
    """Write ``request``'s batch script to ``script_path`` and submit it; the job ID."""
    with open(script_path, "w") as handle:
        handle.write(scheduler.render_script(request))
    os.chmod(script_path, 0o755)
    submission = scheduler.submission(script_path, request)
    status, output = run_command(submission.argv, submission.stdin_path)
    if status != 0:
        raise SchedulerError(f"{submission.argv[0]} failed: {output.strip() or f'exit status {status}'}")
    return scheduler.job_id(output)


def states(scheduler: Scheduler, job_ids: Sequence[str]) -> dict[str, str]:
    """Every job's state, from one status command."""
    status, output = run_command(scheduler.status_command(job_ids))
    return scheduler.parse_status(status, output, job_ids)


def cancel(scheduler: Scheduler, job_ids: Sequence[str]) -> None:
    """Cancel the jobs (with one command)."""
    status, output = run_command(scheduler.cancel_command(job_ids))
    if status != 0:
        raise SchedulerError(f"{scheduler.cancel_command(job_ids)[0]} failed: {output.strip()}")
