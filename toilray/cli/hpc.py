"""``toilray hpc slurm|gridengine|lsf [options] -- SCRIPT ARGS``: run a workflow as one batch job.

Writes the batch script that asks the scheduler for NODES whole nodes and runs ``toilray run
SCRIPT ARGS`` in them (any other command after ``--`` is run as it is, ``toilray-cwl-runner`` for
instance); inside the allocation the run starts Ray across its nodes (``toilray.allocation``).
Toil's scheduler options and variables apply: --slurmPartition, --slurmTime, --slurmQOS,
--slurmArgs, TOIL_SLURM_ARGS, TOIL_GRIDENGINE_ARGS, TOIL_GRIDENGINE_PE, TOIL_LSF_ARGS and
--memoryIsProduct.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import uuid

import click

from toilray import hpc, hpc_schedulers
from toilray.cli.errors import user_errors
from toilray.lib.conversions import human2bytes

_SCHEDULERS = {"slurm": "slurm", "gridengine": "grid_engine", "grid_engine": "grid_engine", "lsf": "lsf"}


def _size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return human2bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _command(args: tuple[str, ...]) -> tuple[str, ...]:
    if not args:
        raise click.UsageError("Give the workflow after '--': toilray hpc slurm --nodes 3 -- flow.py JOBSTORE ...")
    if args[0].endswith(".py"):
        if not os.path.isfile(args[0]):
            raise click.UsageError(f"No such workflow script: {args[0]}")
        return (sys.executable, "-m", "toilray", "run", os.path.abspath(args[0]), *args[1:])
    return args


@click.command("hpc", context_settings={"ignore_unknown_options": True})
@click.argument("scheduler", type=click.Choice(sorted(_SCHEDULERS)))
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True, help="Whole Ray nodes to ask for.")
@click.option("--cpusPerNode", "cpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cores per node.")
@click.option("--memoryPerNode", "memory", callback=_size, default=None,
              help="Memory per node (e.g. 16G; default: the scheduler's default).")
@click.option("--gpusPerNode", "gpus", type=click.IntRange(min=0), default=0, show_default=True,
              help="GPUs per node (Slurm: --gres=gpu:N).")
@click.option("--slurmPartition", "--queue", "queue", default=None,
              help="Slurm partition, Grid Engine or LSF queue.")
@click.option("--slurmTime", "--time", "time_limit", default=None, help="Time limit (HH:MM:SS).")
@click.option("--slurmQOS", "qos", default=None, help="Slurm quality of service.")
@click.option("--slurmArgs", "slurm_args", default="", help="More sbatch arguments (as TOIL_SLURM_ARGS).")
@click.option("--pe", "parallel_environment", default=None,
              help="Grid Engine parallel environment (default: $TOIL_GRIDENGINE_PE, else smp).")
@click.option("--memoryIsProduct", "memory_is_product", is_flag=True,
              help="LSF reads memory per slot: ask for the node's memory divided by its cores.")
@click.option("--jobName", "job_name", default=None, help="The batch job's name (default toilray-SCRIPT).")
@click.option("--output", default=None, help="The batch job's log file (default: toilray-hpc/NAME-JOBID.log).")
@click.option("--dryRun", "dry_run", is_flag=True, help="Print the batch script instead of submitting it.")
@click.option("--wait", is_flag=True, help="Wait for the batch job to end; exit with the workflow's status.")
@click.option("--statePollingWait", "polling", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="With --wait: seconds between two status queries of the job.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@user_errors
def hpc_command(scheduler: str, nodes: int, cpus: int, memory: int | None, gpus: int, queue: str | None,
                time_limit: str | None, qos: str | None, slurm_args: str, parallel_environment: str | None,
                memory_is_product: bool, job_name: str | None, output: str | None, dry_run: bool, wait: bool,
                polling: float, args: tuple[str, ...]) -> None:
    """Submit SCRIPT ARGS (after '--') as one batch job of NODES nodes running Ray."""
    chosen = hpc_schedulers.by_name(_SCHEDULERS[scheduler])
    if slurm_args and chosen.name != "slurm":
        raise click.UsageError("--slurmArgs is for Slurm; use TOIL_GRIDENGINE_ARGS or TOIL_LSF_ARGS")
    command = _command(args)
    name = job_name or "toilray-" + os.path.splitext(os.path.basename(args[0]))[0]
    directory = os.path.abspath("toilray-hpc")
    tag = f"{name}-{uuid.uuid4().hex[:8]}"
    status_file = os.path.join(directory, f"{tag}.status")
    request = hpc.BatchRequest(
        command=command, nodes=nodes, cpus=cpus, memory=memory, gpus=gpus, time=time_limit, queue=queue, qos=qos,
        job_name=name, output=os.path.abspath(output) if output else os.path.join(directory, f"{tag}.log"),
        extra_args=(*chosen.extra_args(os.environ), *shlex.split(slurm_args)),
        parallel_environment=parallel_environment or os.environ.get("TOIL_GRIDENGINE_PE"),
        memory_is_product=memory_is_product, status_file=status_file)
    if dry_run:
        click.echo(chosen.render_script(request), nl=False)
        return
    os.makedirs(directory, exist_ok=True)
    script = os.path.join(directory, f"{tag}.sh")
    job_id = hpc_schedulers.submit(chosen, request, script)
    click.echo(f"Submitted {chosen.name} job {job_id} (script {script}, log {request.output})")
    if wait:
        raise SystemExit(_wait(chosen, job_id, status_file, polling))


def _wait(scheduler: hpc.Scheduler, job_id: str, status_file: str, polling: float) -> int:
    """Poll the job (one status command every ``polling`` seconds) until it ends; its status."""
    try:
        while hpc_schedulers.states(scheduler, [job_id])[job_id] != hpc.FINISHED:
            time.sleep(polling)
    except KeyboardInterrupt:
        hpc_schedulers.cancel(scheduler, [job_id])
        click.echo(f"Cancelled job {job_id}", err=True)
        return 130
    try:
        with open(status_file) as handle:
            status = int(handle.read().strip() or 1)
    except (OSError, ValueError):
        click.echo(f"toilray: job {job_id} ended without an exit status (cancelled, or killed at its time limit?)",
                   err=True)
        return 1
    click.echo(f"Job {job_id} ended with exit status {status}")
    return status
