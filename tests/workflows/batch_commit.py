"""Runs three trivial jobs as one batch task with ``toilray.worker.run_jobs``, in this process,
without Ray, twice; the second job of the batch is committed by "another attempt" (the batch's
second job does it) after it ran and before the batch commits. Prints what each run returned
and what the store holds."""

from __future__ import annotations

import pickle
import sys
from typing import Any

from toilray.config import Config
from toilray.job import Job, make_specs
from toilray.jobStores.jobStore import JobStore
from toilray.protocol import CommitRecord, TaskItem
from toilray.worker import run_jobs


def triple(i: int) -> int:
    return 3 * i


def commit_first(locator: str, job_id: str) -> None:
    JobStore(locator).commit(CommitRecord(job_id, pickle.dumps("earlier"), frozenset(), [], (), (), [], []))


def main(store_path: str, work_dir: str) -> None:
    options = Job.Runner.getDefaultOptions(f"file:{store_path}")
    options.workDir = work_dir
    config = Config.from_options(options)
    root = Job()
    raced = root.addChildFn(triple, 1)
    racer = root.addChildFn(commit_first, config.jobStoreLocator, raced.jobStoreID)
    last = root.addChildFn(triple, 2)
    specs = {s.id: s for s in make_specs(root, config.defaults)}
    store = JobStore(config.jobStoreLocator)
    store.initialize()
    store.write_start({"workflowID": "batch"}, [])
    ctx = config.worker_context("batch", work_dir, [], None, None)
    jobs = [specs[job.jobStoreID] for job in (raced, racer, last)]
    items = [TaskItem(spec.id, spec.name, spec.body, 1) for spec in jobs]
    for run in ("first", "again"):
        outcomes, *results = run_jobs(ctx, jobs[0].requirements, items, [], {}, [])
        values: list[Any] = [pickle.loads(result) for result in results]
        stored = [pickle.loads(store.result_bytes(spec.id)) for spec in jobs]
        print(run, [(o.ok, o.already_committed) for o in outcomes], values, stored)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
