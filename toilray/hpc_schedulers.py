"""Which HPC scheduler a run is in, and running the schedulers' commands (submit, status,
cancel): the engine's side of ``toilray.backends.schedulers``, behind ``toilray.hpc``'s interface."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping, Sequence

from toilray.hpc import Allocation, BatchRequest, Scheduler, SchedulerError, SubmissionRefusedError


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
        said = "; ".join(line.strip() for line in output.strip().splitlines())  # one line
        raise SubmissionRefusedError(f"{submission.argv[0]} failed: {said or f'exit status {status}'}")
    return scheduler.job_id(output)


def states(scheduler: Scheduler, job_ids: Sequence[str]) -> dict[str, str]:
    """Every job's state, from one status command."""
    status, output = run_command(scheduler.status_command(job_ids))
    return scheduler.parse_status(status, output, job_ids)


def cancel(scheduler: Scheduler, job_ids: Sequence[str]) -> None:
    """Cancel the jobs (with one command); one that has ended already is no failure."""
    status, output = run_command(scheduler.cancel_command(job_ids))
    if status != 0 and scheduler.ended_job_message not in output:
        raise SchedulerError(f"{scheduler.cancel_command(job_ids)[0]} failed: {output.strip()}")
