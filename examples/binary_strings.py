"""Dynamic job creation, and a recursion that returns promises.

    python examples/binary_strings.py file:my-job-store [--depth N] [--countDir DIR]

Two recursions over the binary strings of length ``--depth`` (default 5) run side by side:

* ``binaryStringFn`` creates its children at run time and logs each string from a leaf,
  so the leader's log gets ``Binary string: ...`` once per string. With depth n it makes
  2^(n+1) - 1 jobs (63 for depth 5; the manual's 2^(n+2) - 1 is a slip).
* ``binaryStrings`` returns ``job.addFollowOnFn(merge, ...).rv()``: a job whose return value
  is a promise. The workflow's result is the fully resolved list, printed as JSON.

With ``--countDir``, every execution of ``binaryStringFn`` leaves a file there, so the number
of jobs that ran can be counted.
"""

import json
import os
import uuid
from typing import Any

from toilray.common import Toil
from toilray.job import Job, Promise


def binaryStringFn(job: Job, depth: int, message: str = "", countDir: str | None = None) -> None:
    if countDir is not None:
        open(os.path.join(countDir, f"binaryStringFn-{uuid.uuid4().hex}"), "w").close()
    if depth > 0:
        job.addChildJobFn(binaryStringFn, depth - 1, message + "0", countDir, memory="100M", cores=0.1)
        job.addChildJobFn(binaryStringFn, depth - 1, message + "1", countDir, memory="100M", cores=0.1)
    else:
        job.log(f"Binary string: {message}")


def binaryStrings(job: Job, depth: int, message: str = "") -> list[str] | Promise:
    if depth > 0:
        halves = [
            job.addChildJobFn(binaryStrings, depth - 1, message + "0", memory="100M", cores=0.1).rv(),
            job.addChildJobFn(binaryStrings, depth - 1, message + "1", memory="100M", cores=0.1).rv(),
        ]
        return job.addFollowOnFn(merge, halves, memory="100M", cores=0.1).rv()
    return [message]


def merge(strings: list[list[str]]) -> list[str]:
    return strings[0] + strings[1]


def both(job: Job, depth: int, countDir: str | None) -> Any:
    job.addChildJobFn(binaryStringFn, depth, countDir=countDir, memory="100M", cores=0.1)
    return job.addChildJobFn(binaryStrings, depth, memory="100M", cores=0.1).rv()


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--depth", type=int, default=5, help="Length of the binary strings.")
    parser.add_argument("--countDir", default=None, help="Leave one file here per binaryStringFn job run.")
    options = parser.parse_args()
    countDir = os.path.abspath(options.countDir) if options.countDir else None

    with Toil(options) as toil:
        if toil.options.restart:
            strings = toil.restart()
        else:
            strings = toil.start(Job.wrapJobFn(both, options.depth, countDir, memory="100M", cores=0.1))
    print(json.dumps(strings))


if __name__ == "__main__":
    main()
