"""Test workflow for elastic HPC runs: a root with N children, each of which marks in --marks the
scheduler job it runs in (a Ray worker node started as a batch job) and returns that job's ID;
a follow-on writes, as JSON to --out, how many children ran in each batch job, and with
--squeue, the worker jobs the scheduler still lists once every other worker job has been
cancelled as idle (it waits for that, up to two minutes). --rootCores sizes the root."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import time

from toilray.common import Toil
from toilray.job import Job

_JOB_ID_VARIABLES = ("SLURM_JOB_ID", "JOB_ID", "LSB_JOBID")


def _batch_job() -> str:
    return next((os.environ[name] for name in _JOB_ID_VARIABLES if name in os.environ), "none")


def child(seconds: float, marks: str) -> str:
    job_id = _batch_job()
    open(os.path.join(marks, job_id), "a").close()
    time.sleep(seconds)
    return job_id


def _worker_jobs(squeue: str) -> list[str]:
    listed = subprocess.run([squeue, "--noheader", "--name=toilray-worker", "--format=%i"], capture_output=True,
                            text=True, check=True).stdout
    return sorted(listed.split())


def count(job_ids: list[str], out: str, squeue: str | None) -> None:
    result: dict[str, object] = {"jobs": collections.Counter(job_ids)}
    if squeue:
        deadline = time.monotonic() + 120
        while _worker_jobs(squeue) != [_batch_job()] and time.monotonic() < deadline:
            time.sleep(0.5)
        result["left"] = _worker_jobs(squeue)
        result["self"] = _batch_job()
    with open(out, "w") as handle:
        json.dump(result, handle)


def root(job: Job, n: int, seconds: float, marks: str, out: str, squeue: str | None) -> None:
    job_ids = [job.addChildFn(child, seconds, marks, cores=1, memory="50M").rv() for _ in range(n)]
    job.addFollowOnFn(count, job_ids, out, squeue, cores=1, memory="50M")


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--marks", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--squeue", default=None)
    parser.add_argument("--rootCores", type=float, default=1)
    options = parser.parse_args()
    options.retryCount = 0
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(root, options.n, options.seconds, options.marks, options.out, options.squeue,
                                 cores=options.rootCores, memory="50M"))
