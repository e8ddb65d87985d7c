"""Where a job of spread.py runs, and a service that records where it runs: a module beside the
script, which nodes import as the script's code (shipped to them when they do not share the
leader's file system)."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from toilray.job import Job


def node_address() -> str:
    # The address this machine reaches others from (each node of the test cluster has its own).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))
        return str(probe.getsockname()[0])


def reachable(where: str) -> bool:
    host, _, port = where.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return False
    return True


class RecordedService(Job.Service):
    """A service whose start leaves ``<count_dir>/service-<node address>-<uuid>``."""

    def __init__(self, count_dir: str, **requirements: Any) -> None:
        super().__init__(**requirements)
        self.count_dir = count_dir

    def start(self, job: Job) -> str:
        address = node_address()
        open(os.path.join(self.count_dir, f"service-{address}-{uuid.uuid4().hex}"), "w").close()
        return address

    def check(self) -> bool:
        return True

    def stop(self, job: Job) -> None:
        pass
