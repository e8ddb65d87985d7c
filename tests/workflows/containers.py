"""Test workflow: one job that runs a container through ``toilray.lib.docker``.

``--image IMAGE`` runs ``echo ran`` in it (a missing image makes the workflow fail);
``--sleep`` runs a container that sleeps, after writing the worker's pid to ``--pidFile``,
for the tests that kill the worker or the workflow while the container runs.
"""

from __future__ import annotations

import os

from toilray.common import Toil
from toilray.job import Job
from toilray.lib.docker import apiDockerCall


def run_container(job: Job, image: str, sleep: bool, pid_file: str | None) -> bytes:
    if sleep:
        assert pid_file is not None
        with open(pid_file, "w") as handle:
            handle.write(str(os.getpid()))
        return apiDockerCall(job, image, ["sleep", "600"])
    return apiDockerCall(job, image, ["echo", "ran"])


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--image", default="docker.io/library/debian:stable-slim")
    parser.add_argument("--sleep", action="store_true")
    parser.add_argument("--pidFile")
    options = parser.parse_args()
    with Toil(options) as toil:
        print("RESULT", toil.start(Job.wrapJobFn(run_container, options.image, options.sleep, options.pidFile,
                                                 cores=0.1)).decode().strip())
