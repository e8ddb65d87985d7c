"""What toilray needs from an HPC scheduler (Slurm, Grid Engine, LSF).

toilray never submits one scheduler job per workflow job: it runs Ray across an allocation
(``toilray.allocation``) and lets Ray schedule the jobs, so the scheduler sees a handful of long
jobs however many jobs the workflow has. A scheduler is the small interface below; its
implementations live in ``toilray.backends.schedulers``, and ``toilray.hpc_schedulers`` finds
the one a run is in and runs their commands.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from toilray.exceptions import ToilrayError


class SchedulerError(ToilrayError):
    """A scheduler command failed, or its allocation cannot be read."""


class SubmissionRefusedError(SchedulerError):
    """The scheduler refused a batch job (a bad partition, queue or argument, say)."""


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
    #: what the cancel command says of a job that has already ended (not a failure to cancel)
    ended_job_message: str

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
