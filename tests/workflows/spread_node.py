"""Where a job of spread.py runs: a module beside the script, which nodes import as the script's
code (shipped to them when they do not share the leader's file system)."""

from __future__ import annotations

import socket


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
