"""Test workflow: a service that only an on-demand worker of the multi-node test cluster can hold
(it asks for 2 GB of memory; the head offers 1 GB), used by a job that waits until PATH exists
(``--gate``; a test that never makes it keeps the service needed). The service's start leaves
``<countDir>/service-<node address>-<uuid>``. Nothing takes a CPU, so other workflows' jobs still
fit on every node."""

from __future__ import annotations

import os
import time

from spread_node import RecordedService

from toilray.common import Toil
from toilray.job import Job

_GATE_WAIT = 600.0


def client(job: Job, address: str, gate: str) -> str:
    deadline = time.monotonic() + _GATE_WAIT
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.2)
    return address


def root(job: Job, count_dir: str, gate: str) -> str:
    address = job.addService(RecordedService(count_dir, cores=0, memory="2G", disk="10M", preemptible=False))
    return job.addChildJobFn(client, address, gate, cores=0, memory="50M", disk="10M").rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--countDir", required=True)
    parser.add_argument("--gate", required=True)
    options = parser.parse_args()
    with Toil(options) as toil:
        result = toil.start(Job.wrapJobFn(root, options.countDir, options.gate, cores=0, memory="50M", disk="10M"))
    print(f"RESULT {result}")
