"""Test workflow: a root with N children, each recording its execution; a follow-on sums them.

Each execution of a child creates a new file ``<countDir>/<index>-<jobStoreID>-<uuid>``, so a
test can tell how often every job ran and match executions with the store's commit records.
With ``--gate PATH``, every child that starts after ``--ungated`` others have started waits until
PATH exists, so a test can interrupt the run while it is certainly unfinished, however slow the
machine.
"""

from __future__ import annotations

import os
import resource
import time
import uuid

from toilray.common import Toil
from toilray.job import Job


def child(job: Job, index: int, count_dir: str, seconds: float, gate: str | None = None, ungated: int = 0) -> int:
    open(os.path.join(count_dir, f"{index}-{job.jobStoreID}-{uuid.uuid4().hex}"), "w").close()
    if gate is not None and len(os.listdir(count_dir)) > ungated:
        while not os.path.exists(gate):
            time.sleep(0.05)
    if seconds:
        # Stand-in for real work, so that the leader can be killed while jobs are running.
        time.sleep(seconds)
    return index


def total(values: list[int]) -> int:
    return sum(values)


def root(job: Job, n: int, count_dir: str, seconds: float, gate: str | None = None, ungated: int = 0) -> object:
    values = [job.addChildJobFn(child, i, count_dir, seconds, gate, ungated, cores=0.5, memory="50M").rv()
              for i in range(n)]
    return job.addFollowOnFn(total, values).rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--countDir", required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--gate")
    parser.add_argument("--ungated", type=int, default=0)
    options = parser.parse_args()
    with Toil(options) as toil:
        if options.restart:
            result = toil.restart()
        else:
            result = toil.start(Job.wrapJobFn(root, options.n, options.countDir, options.seconds, options.gate,
                                                      options.ungated))
    print(f"RESULT {result}")
    print(f"LEADER_MAXRSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
