"""Which Ray a run uses, decided from its settings and environment alone, without importing Ray:
the one rule that ``toilray.cluster.RayConnection`` connects by and that a run's start follows to
start the managed local Ray ahead of Ray's import (``toilray.local_ray.starting_ahead``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from toilray import hpc_schedulers
from toilray.hpc import Allocation, Scheduler


@dataclass(frozen=True)
class RayChoice:
    """``elastic``: a head here and worker nodes as scheduler jobs (``--batchSystem``); ``address``: the
    Ray cluster there; ``allocation``: a Ray of the run's own across the HPC allocation it runs in;
    ``managed``: the managed local Ray (``toilray.local_ray``); ``embedded``: a Ray of the run's own."""

    kind: Literal["elastic", "address", "allocation", "managed", "embedded"]
    address: str | None = None
    allocated: tuple[Scheduler, Allocation] | None = None


def choose(address: str | None, embedded: bool, elastic: bool) -> RayChoice:
    """The Ray for a run with ``--rayAddress`` ``address`` (else RAY_ADDRESS), ``--embeddedRay`` and
    an elastic ``--batchSystem`` as given: the batch system wins, then an address, then the private
    Ray asked for, then the allocation the run is inside; else the managed local Ray."""
    if elastic:
        return RayChoice("elastic")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        return RayChoice("address", address)
    if embedded:
        return RayChoice("embedded")
    allocated = hpc_schedulers.detect()
    if allocated is not None:
        return RayChoice("allocation", allocated=allocated)
    return RayChoice("managed")
