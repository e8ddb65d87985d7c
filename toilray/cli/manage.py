"""``toilray status``, ``clean`` and ``kill``: inspecting and managing a job store.

None of them reads the job records: status comes from the record the leader rewrites every
second, and from whether a live leader holds the store's lock.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from toilray import forkserver, local_ray
from toilray.cli.errors import user_errors
from toilray.exceptions import JobStoreLockedException, NoSuchJobStoreException
from toilray.jobStores.jobStore import JobStore
from toilray.stats import NoStatsError, defaults_from_meta, read_records, render_table


def open_existing(locator: str) -> JobStore:
    store = JobStore(locator)
    if not store.root_exists():
        raise NoSuchJobStoreException(locator)
    return store


def workflow_status(store: JobStore) -> dict[str, Any]:
    """The workflow's state and job counts, as `toilray status` reports them."""
    recorded = store.read_status() or {}
    running = store.leader_is_running()
    state = recorded.get("state", "not started")
    if running:
        state = "running"
    elif state == "running":
        # The record says running but no leader holds the lock: it died (or was killed).
        state = "stopped"
    status: dict[str, Any] = {
        "jobStore": store.locator,
        "state": state,
        "finished": recorded.get("finished", 0),
        # Jobs that were running or queued in Ray when the leader died will run again: count them as ready.
        "running": recorded.get("running", 0) if running else 0,
        "queued": recorded.get("queued", 0) if running else 0,
        "waitingForNodes": recorded.get("waitingForNodes", 0) if running else 0,
        "ready": recorded.get("ready", 0)
                 + (0 if running else recorded.get("running", 0) + recorded.get("queued", 0)
                    + recorded.get("waitingForNodes", 0)),
        "waiting": recorded.get("waiting", 0),
        "failed": recorded.get("failed", []),
        "unfinished": recorded.get("unfinished", 0),
        "withSuccessors": recorded.get("withSuccessors", 0),
        "withServices": recorded.get("withServices", 0) if running else 0,
        "services": recorded.get("services", 0) if running else 0,
        "leader": recorded.get("leader") if running else None,
        "updated": recorded.get("updated"),
        "cacheHits": recorded.get("cacheHits", 0),
        "cacheMisses": recorded.get("cacheMisses", 0),
    }
    if store.is_started():
        status["workflowID"] = store.meta().get("workflowID")
    return status


_ADVICE = {
    "completed": "The workflow completed successfully.",
    "failed": "The workflow failed; fix the cause and run it again with --restart.",
    "stopped": "The leader is gone (it crashed or was killed); resume with --restart.",
    "killed": "The workflow was killed with 'toilray kill'; resume with --restart.",
    "interrupted": "The workflow was interrupted (Ctrl-C); resume with --restart.",
    "running": "The workflow is running.",
    "not started": "The workflow has not started yet.",
}


def _toil_lines(info: dict[str, Any], job_store: str, with_logs: int) -> list[str]:
    """The lines Toil's ``toil status`` prints (users grep for them), from the same counts.

    A job that ran but waits for its successors is what Toil calls a job with children;
    jobs with log files are the failed ones, whose reports the store keeps for ``--failed``.
    """
    if info["state"] == "completed":
        return ["Root job is absent. The workflow may have completed successfully."]
    if info["state"] == "not started":
        return []
    not_run, with_children, failed = info["unfinished"], info["withSuccessors"], len(info["failed"])
    considered = not_run + with_children
    ready = info["ready"] + info["queued"] + info["running"] + info["waitingForNodes"]
    return [
        f"There are {considered} unfinished jobs, {with_children} parent jobs with children, "
        f"{info['withServices']} jobs with services, {info['services']} services, and {failed} totally failed "
        f"jobs currently in {job_store}.",
        f"Of the {considered} jobs considered, there are {failed} completely failed jobs, {with_children} jobs "
        f"with children, {ready} jobs ready to run, 0 zombie jobs, {info['withServices']} jobs with services, "
        f"{info['services']} services, and {with_logs} jobs with log files currently in {job_store}.",
    ]


@click.command()
@click.argument("job_store")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--failed", "show_failed", is_flag=True, help="List failed jobs with the end of their logs.")
@click.option("--failIfNotComplete", "fail_if_not_complete", is_flag=True,
              help="Exit with status 1 unless the workflow completed.")
@user_errors
def status(job_store: str, as_json: bool, show_failed: bool, fail_if_not_complete: bool) -> None:
    """Report whether the workflow in JOB_STORE runs, completed or failed, and its job counts."""
    store = open_existing(job_store)
    info = workflow_status(store)
    if show_failed:
        info["failedJobs"] = store.failure_reports()
    if as_json:
        click.echo(json.dumps(info, indent=1))
    else:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["updated"])) if info["updated"] else "never"
        click.echo(f"Workflow in {job_store}: {info['state'].upper()}")
        click.echo(
            f"Jobs: {info['finished']} finished, {info['running']} running, {info['queued']} queued in Ray "
            f"(submitted, waiting for free cores), {info['ready']} ready, {info['waiting']} waiting, "
            f"{len(info['failed'])} failed (as of {when})"
        )
        if info["waitingForNodes"]:
            click.echo(f"Waiting for nodes: {info['waitingForNodes']} job(s) fit no current node; the cluster's "
                       "autoscaler is adding one")
        if info["leader"]:
            click.echo(f"Leader: {info['leader']}")
        if info["cacheHits"] or info["cacheMisses"]:
            click.echo(f"Call cache: {info['cacheHits']} hit(s) (jobs taken from it, not run), "
                       f"{info['cacheMisses']} miss(es)")
        for label in info["failed"]:
            click.echo(f"Failed: {label}")
        click.echo(_ADVICE.get(info["state"], ""))
        for line in _toil_lines(info, job_store, sum(1 for _ in store.failed_ids()) if info["failed"] else 0):
            click.echo(line)
        for job_id, report in info.get("failedJobs", {}).items():
            click.echo(f"\n=== failed job {job_id} ===\n{report.rstrip()}")
    if fail_if_not_complete and info["state"] != "completed":
        raise SystemExit(1)


@click.command()
@click.argument("job_store")
@user_errors
def clean(job_store: str) -> None:
    """Delete JOB_STORE and everything in it (nothing to do if it does not exist)."""
    store = JobStore(job_store)
    if store.root_exists() and store.leader_is_running():
        raise JobStoreLockedException(
            f"The job store '{job_store}' is in use by a running workflow; stop it with 'toilray kill' first"
        )
    store.destroy()
    click.echo(f"Deleted job store {job_store}")


@click.command()
@click.argument("job_store")
@user_errors
def kill(job_store: str) -> None:
    """Ask the leader of the workflow in JOB_STORE to stop it and its running jobs."""
    store = open_existing(job_store)
    if not store.leader_is_running():
        click.echo(f"No running workflow in {job_store}; nothing to kill")
        return
    store.request_kill()
    click.echo(f"Asked the leader of {job_store} to stop (it checks every --kill_polling_interval seconds)")


@click.group("local-ray")
def local_ray_group() -> None:
    """The local Ray that workflows on this machine share (started by the first run that needs it)."""


@local_ray_group.command("start")
@click.option("--num-cpus", type=int, default=None, help="CPUs to offer (default: all of this machine's).")
@user_errors
def local_ray_start(num_cpus: int | None) -> None:
    """Start the local instance, kept until 'toilray local-ray stop' (workflows without --rayAddress use it)."""
    instance = local_ray.start(num_cpus)
    click.echo(f"Local Ray running at {instance.address} (pid {instance.pid}); stop it with 'toilray local-ray stop'")


@local_ray_group.command("stop")
@user_errors
def local_ray_stop() -> None:
    """Stop the local instance and every process it started (runs still attached to it lose their Ray),
    and the fork servers of the CWL and WDL runners and the local Ray's workers (each ends when its runs have)."""
    click.echo("Stopped the local Ray instance" if local_ray.stop() else "No local Ray instance was running")
    if forkserver.stop():
        click.echo("Stopped the fork servers (of the CWL and WDL runners and the local Ray's workers)")


@local_ray_group.command("status")
def local_ray_status() -> None:
    """Say whether the local instance runs, and where."""
    instance = local_ray.running()
    if instance is None:
        click.echo("not running")
        return
    until = "until 'toilray local-ray stop'" if instance.idle_timeout is None else \
        f"until {instance.idle_timeout:g} s without a workflow"
    attached = "a workflow is attached" if local_ray.in_use(instance) else "no workflow is attached"
    click.echo(f"running at {instance.address} (pid {instance.pid}, {until}); {attached}")


@click.command()
@click.argument("job_store")
@click.option("--json", "as_json", is_flag=True, help="Print every per-job record as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a self-contained HTML page (it opens offline): a timeline of every "
                   "attempt on its node's worker slots, and per-category plots.")
@user_errors
def stats(job_store: str, as_json: bool, html_path: str | None) -> None:
    """Where the time went in the workflow of JOB_STORE (it must have run with --stats)."""
    store = open_existing(job_store)
    records = read_records(store)
    if not records:
        raise NoStatsError(f"The job store '{job_store}' holds no statistics: run the workflow with --stats")
    if html_path:
        from toilray.stats_page import render_html  # plotly loads only for a page

        with open(html_path, "w") as page:
            page.write(render_html(records, f"toilray run of {job_store}"))
    if as_json:
        click.echo(json.dumps(records, indent=1))
    else:
        click.echo(render_table(records, defaults_from_meta(store.meta())))
