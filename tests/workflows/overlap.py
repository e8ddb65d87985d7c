"""Test workflow: two 1-core jobs that each watch for the other to be running.

Each job announces itself with a file and waits (up to --wait seconds) for the other's file
(or for the other's note that it already saw this one). Seeing it proves both ran at the same
time; with --maxCores 1 neither may ever see it.
"""

from __future__ import annotations

import os
import time

from toilray.common import Toil
from toilray.job import Job


def side(name: str, other: str, directory: str, wait: float) -> bool:
    mine = os.path.join(directory, f"{name}.running")
    open(mine, "w").close()
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if os.path.exists(os.path.join(directory, f"{other}.running")) or os.path.exists(
                os.path.join(directory, f"{other}.saw")
            ):
                open(os.path.join(directory, f"{name}.saw"), "w").close()
                return True
            time.sleep(0.05)
        return False
    finally:
        os.unlink(mine)


def root(job: Job, directory: str, wait: float) -> object:
    a = job.addChildFn(side, "a", "b", directory, wait, cores=1, memory="100M")
    b = job.addChildFn(side, "b", "a", directory, wait, cores=1, memory="100M")
    return [a.rv(), b.rv()]


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--wait", type=float, default=60.0)
    options = parser.parse_args()
    with Toil(options) as toil:
        print(f"RESULT {toil.start(Job.wrapJobFn(root, options.dir, options.wait, cores=0.1))}")
