"""Test workflow: a root whose only child always fails, for what a user sees of a failed
workflow. With --catch the script catches FailedJobsException (imported from where Toil's
scripts import it) and prints its attributes as JSON; otherwise it is left uncaught."""

from __future__ import annotations

import json

from toilray.common import Toil
from toilray.job import Job
from toilray.leader import FailedJobsException


def broken() -> None:
    raise RuntimeError("the child breaks on purpose")


def start(job: Job) -> None:
    job.addChildFn(broken, cores=0.1)


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--catch", action="store_true")
    options = parser.parse_args()
    options.retryCount = 0
    with Toil(options) as toil:
        if not options.catch:
            toil.start(Job.wrapJobFn(start, cores=0.1))
        else:
            try:
                toil.start(Job.wrapJobFn(start, cores=0.1))
            except FailedJobsException as exc:
                print(json.dumps({"jobStoreLocator": exc.jobStoreLocator,
                                  "numberOfFailedJobs": exc.numberOfFailedJobs, "exit_code": exc.exit_code}))
