"""What a trivial job costs in the worker, without Ray: a fixed run that does not depend on load.

It makes a file job store and N trivial jobs (the fan-out's children), then hands them to
``toilray.worker.run_jobs`` in this process, in tasks of 64 as the leader batches quick jobs:
unpickling, running, committing, returning. It prints the CPU time per job; run it under
``strace -f -c`` (system calls per job) or ``valgrind --tool=callgrind`` (instructions per job:
subtract a run of a smaller N to leave out start-up).

    .venv/bin/python benchmarks/worker_cost.py --jobs 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from toilray.config import Config
from toilray.job import Job, make_specs
from toilray.jobStores.jobStore import JobStore
from toilray.protocol import TaskItem
from toilray.worker import run_jobs

BATCH = 64


def leaf(i: int) -> int:
    return i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="How many trivial jobs (default 2000).")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="worker-cost-")
    try:
        options = Job.Runner.getDefaultOptions(os.path.join(scratch, "store"))
        options.workDir = scratch
        config = Config.from_options(options)
        root = Job()
        for i in range(args.jobs):
            root.addChildFn(leaf, i)
        specs = [s for s in make_specs(root, config.defaults) if s.id != root.jobStoreID]
        store = JobStore(config.jobStoreLocator)
        store.initialize()
        store.write_start({"workflowID": "worker-cost", "rootJobID": root.jobStoreID}, [])
        ctx = config.worker_context("worker-cost", scratch, [], None, None)
        items = [TaskItem(s.id, s.name, s.body, 1) for s in specs]
        started, wall_started = time.process_time(), time.perf_counter()
        for first in range(0, len(items), BATCH):
            batch = items[first:first + BATCH]
            outcomes = run_jobs(ctx, specs[0].requirements, batch, [], {}, [])[0]
            assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        cpu, wall = time.process_time() - started, time.perf_counter() - wall_started
        assert len(list(store.committed_ids())) == len(items)
        print(f"{len(items)} jobs in the worker, per job: {cpu / len(items) * 1e6:.0f} us CPU, "
              f"{wall / len(items) * 1e6:.0f} us wall", file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
