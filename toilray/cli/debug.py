"""``toilray debug-job`` and ``toilray debug-file``: look inside a workflow's job store."""

from __future__ import annotations

import fnmatch
import os
import sys
import tempfile
import traceback

import click

from toilray import serialize
from toilray.cli.errors import user_errors
from toilray.cli.manage import open_existing
from toilray.deferred import DeferredFunctions
from toilray.exceptions import NoSuchJobException
from toilray.fileStores.fileStore import FileStore
from toilray.job import load_job, run_job
from toilray.jobStores.jobStore import JobStore
from toilray.protocol import JobSpec
from toilray.requirements import TOIL_DEFAULTS, Requirements


def _all_specs(store: JobStore) -> list[JobSpec]:
    """Every job the store describes: the initial graph and what each committed job created."""
    specs = list(store.initial_specs())
    for job_id in store.committed_ids():
        record = store.read_commit(job_id)
        if record is not None:
            specs.extend(record.new_specs)
    return specs


def _choose(store: JobStore, wanted: str | None) -> JobSpec:
    specs = _all_specs(store)
    if wanted is None:
        failed = set(store.failed_ids())
        matches = [s for s in specs if s.id in failed]
        if not matches:
            raise NoSuchJobException("(no failed job in this store; name one)")
    else:
        matches = [s for s in specs if s.id.startswith(wanted) or wanted in (s.name, s.unit_name, s.display_name)]
        if not matches:
            raise NoSuchJobException(wanted)
    if len(matches) > 1:
        names = ", ".join(s.label() for s in matches[:10])
        raise NoSuchJobException(f"{wanted or 'failed job'} is ambiguous ({len(matches)} jobs: {names}); give a job ID")
    return matches[0]


@click.command("debug-job")
@click.argument("job_store")
@click.argument("job", required=False)
@user_errors
def debug_job(job_store: str, job: str | None) -> None:
    """Run one job of JOB_STORE again, here in the foreground (prints and pdb work).

    JOB is a job ID (or its first characters) or a job name; without it, the failed job.
    Nothing is written back to the job store.
    """
    store = open_existing(job_store)
    spec = _choose(store, job)
    meta = store.meta()
    for path in reversed(meta.get("codePaths", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    serialize.set_main_module_name(meta.get("mainModule"), is_leader=False)
    click.echo(f"Running job {spec.label()} in the foreground", err=True)
    defaults = Requirements.from_json(meta["defaults"]) if "defaults" in meta else TOIL_DEFAULTS
    instance = load_job(spec.body, serialize.PromiseContext({}, store.result_bytes), defaults)
    with tempfile.TemporaryDirectory(prefix="toilray-debug-") as scratch:
        deferred = DeferredFunctions(os.path.join(scratch, "deferred"))
        file_store = FileStore(store, spec.name, scratch, meta.get("launchDir", os.getcwd()), deferred)
        try:
            value = run_job(instance, file_store).value
        except Exception:
            traceback.print_exc()
            click.echo(f"toilray: job {spec.label()} failed again (above)", err=True)
            raise SystemExit(1) from None
        finally:
            file_store.close()
    click.echo(f"Job {spec.label()} finished; it returned {value!r}", err=True)


@click.command("debug-file")
@click.argument("job_store")
@click.option("--listFilesInJobStore", "list_files", is_flag=True,
              help="List the files in the job store (also written to jobstore_files.txt).")
@click.option("--fetch", "patterns", multiple=True, help="Copy files whose name matches this glob (repeatable).")
@click.option("--localFilePath", "destination", default=".", show_default=True, help="Where --fetch copies files.")
@user_errors
def debug_file(job_store: str, list_files: bool, patterns: tuple[str, ...], destination: str) -> None:
    """List or fetch the global files of JOB_STORE (matched by the names they were written with)."""
    store = open_existing(job_store)
    files = store.file_ids()
    if list_files:
        with open("jobstore_files.txt", "w") as listing:
            for file_id in sorted(files):
                listing.write(file_id + "\n")
                click.echo(file_id)
    if patterns:
        os.makedirs(destination, exist_ok=True)
        fetched = 0
        for file_id in files:
            name = os.path.basename(file_id)
            if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                target = os.path.join(destination, name)
                if os.path.exists(target):
                    target = os.path.join(destination, f"{file_id.split('/')[1][:8]}-{name}")
                store.read_file(file_id, target, allow_link=False)
                fetched += 1
                click.echo(f"Fetched {file_id} -> {target}")
        click.echo(f"{fetched} file(s) fetched into {destination}")
