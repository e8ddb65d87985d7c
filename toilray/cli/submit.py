"""``toilray submit``: send a workflow to a running Ray cluster through Ray's Jobs API.

The script's directory becomes the job's working directory (uploaded by Ray), and the
cluster runs ``python -m toilray run SCRIPT [JOBSTORE] [options]`` there, so the leader runs
on the cluster and the submitting machine may disconnect (without ``--wait``).
"""

from __future__ import annotations

import asyncio
import os
import shlex

import click

from toilray.cli.errors import user_errors
from toilray.exceptions import ToilrayError

_FINAL_OK = "SUCCEEDED"


class SubmitError(ToilrayError):
    """The cluster could not be reached or refused the submission."""


async def _follow(client: object, submission_id: str) -> None:
    async for chunk in client.tail_job_logs(submission_id):  # type: ignore[attr-defined]
        click.echo(chunk, nl=False)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--address", required=True, help="The cluster's dashboard address, e.g. http://HEAD:8265.")
@click.option("--wait", is_flag=True, help="Follow the workflow's log to its end; exit with its status.")
@click.option("--python", "python", default="python", show_default=True,
              help="The Python interpreter on the cluster that has toilray installed.")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@user_errors
def submit(address: str, wait: bool, python: str, script: str, args: tuple[str, ...]) -> None:
    """Run SCRIPT on the Ray cluster at --address (ARGS: job store and options, as for run)."""
    if not os.path.isfile(script):
        raise SubmitError(f"No such workflow script: {script}")
    if "RAY_AUTH_MODE" not in os.environ and os.path.exists(os.path.expanduser("~/.ray/auth_token")):
        # Clusters started with 'ray start' expect the token that this machine has.
        os.environ["RAY_AUTH_MODE"] = "token"
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SubmitError(f"Cannot reach the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    command = [python, "-m", "toilray", "run", os.path.basename(script), *args]
    submission_id = client.submit_job(
        entrypoint=" ".join(shlex.quote(part) for part in command),
        runtime_env={"working_dir": os.path.dirname(os.path.abspath(script))},
    )
    click.echo(submission_id)
    if not wait:
        return
    asyncio.run(_follow(client, submission_id))
    status = str(client.get_job_status(submission_id))
    final = status.rsplit(".", 1)[-1]
    click.echo(f"toilray: submission {submission_id} ended: {final}", err=True)
    if final != _FINAL_OK:
        raise SystemExit(1)
