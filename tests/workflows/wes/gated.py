"""A workflow for the WES server's tests: a first job, then one that waits for a gate file.

Each job appends a line to its own marks file when it runs, so a test counts how often it ran.
"""

import os
import time

from toilray.common import Toil
from toilray.job import Job


def mark(marks: str, name: str) -> None:
    with open(os.path.join(marks, name), "a") as handle:
        handle.write(f"{os.getpid()}\n")


def wait_for_gate(job: Job, marks: str, gate: str, tag: str) -> str:
    while not os.path.exists(gate):
        time.sleep(0.2)
    mark(marks, f"second-{tag}")
    return tag


def first(job: Job, marks: str, gate: str, tag: str) -> str:
    mark(marks, f"first-{tag}")
    return job.addChildJobFn(wait_for_gate, marks, gate, tag, cores=0.1).rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--marks", required=True)
    parser.add_argument("--gate", required=True)
    parser.add_argument("--tag", required=True)
    options = parser.parse_args()
    with Toil(options) as toil:
        print(toil.restart() if options.restart else toil.start(Job.wrapJobFn(first, options.marks, options.gate,
                                                                              options.tag, cores=0.1)))
