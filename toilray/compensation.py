"""``--preemptibleCompensation``: on-demand nodes in place of spot nodes that do not come.

Toil's rule (its cluster scaler): when the provisioner cannot start as many preemptible nodes of
a type as the jobs need, the missing number (the deficit) times the compensation, rounded half
away from zero, is added to the non-preemptible nodes it asks for. On Ray the autoscaler starts
the nodes and toilray does not hear of a failed launch, so a spot node counts as missing once
preemptible jobs have waited ``GRACE`` seconds for a node that none of the current ones is (the
jobs ``toilray status`` shows as waiting for nodes). The deficit is how many nodes of the
smallest preemptible node type that can hold them those jobs fill; the compensation is asked of
the autoscaler as that many bundles of the type's size that only on-demand nodes hold
(``ray.autoscaler.sdk.request_resources``), which the preemptible jobs may then use. The request
is withdrawn as soon as no such job waits any more (idle nodes then go after the autoscaler's
idle timeout), and at the end of the run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

from toilray.cluster import ON_DEMAND_RESOURCE, NodeType
from toilray.requirements import Requirements

logger = logging.getLogger("toilray.leader")

# Seconds a preemptible job waits for a node before the spot node it needs counts as missing:
# a cloud's spot node is usually up in one to three minutes.
GRACE = 300.0
_A_LITTLE = 0.001

Bundles = list[dict[str, float]]


def toil_round(number: float) -> int:
    """Round half away from zero (Toil's ``_round``; Python's round() rounds half to even)."""
    return int(math.copysign(math.floor(abs(number) + 0.5), number))


def compensation_nodes(deficit: int, compensation: float) -> int:
    """The on-demand nodes that make up for ``deficit`` missing preemptible ones."""
    return toil_round(deficit * compensation)


def preemptible_deficit(waiting: Iterable[Requirements], node_type: NodeType) -> int:
    """How many nodes of ``node_type`` the preemptible jobs ``waiting`` fill (by cores, memory
    and accelerators, whichever needs most; at least one while any job waits)."""
    reqs = list(waiting)
    if not reqs:
        return 0
    capacity = node_type.capacity
    needs = [sum(r.cores for r in reqs) / capacity.cpus if capacity.cpus else 0.0,
             sum(r.memory for r in reqs) / capacity.memory if math.isfinite(capacity.memory) and capacity.memory
             else 0.0,
             sum(r.gpus for r in reqs) / capacity.gpus if capacity.gpus else 0.0]
    return max(1, math.ceil(max(needs) - 1e-9))


def _holds(node_type: NodeType, req: Requirements) -> bool:
    capacity = node_type.capacity
    return req.cores <= capacity.cpus and req.memory <= capacity.memory and req.gpus <= capacity.gpus


def compensation_bundles(waiting: Iterable[tuple[Requirements, float]], node_types: list[NodeType],
                         compensation: float, now: float, grace: float = GRACE) -> Bundles:
    """What to ask the autoscaler for, given the preemptible jobs waiting for a node and since
    when each waits: for each preemptible node type, ``compensation_nodes`` bundles of its size
    that only on-demand nodes hold. Each job counts for the smallest preemptible type that can
    hold it; a type with no on-demand type as large gets none (nothing could be started)."""
    spot = sorted((t for t in node_types if t.capacity.preemptible),
                  key=lambda t: (t.capacity.cpus, t.capacity.memory, t.capacity.gpus))
    on_demand = [t for t in node_types if not t.capacity.preemptible]
    late: dict[str, list[Requirements]] = {}
    for req, since in waiting:
        if not req.preemptible or now - since < grace:
            continue
        home = next((t for t in spot if _holds(t, req)), None)
        if home is not None:
            late.setdefault(home.name, []).append(req)
    bundles: Bundles = []
    for node_type in spot:
        count = compensation_nodes(preemptible_deficit(late.get(node_type.name, ()), node_type), compensation)
        capacity = node_type.capacity
        shape = {"CPU": capacity.cpus, ON_DEMAND_RESOURCE: _A_LITTLE}
        if capacity.gpus:
            shape["GPU"] = capacity.gpus
        if math.isfinite(capacity.memory):
            shape["memory"] = capacity.memory
        if count and any(all(_holds(t, r) for r in late[node_type.name]) for t in on_demand):
            bundles += [dict(shape) for _ in range(count)]
    return bundles


class PreemptibleCompensation:
    """Follows the preemptible jobs that wait for nodes and keeps the autoscaler's request for
    compensating on-demand capacity up to date (``request`` is Ray's ``request_resources``)."""

    def __init__(self, compensation: float, node_types: list[NodeType],
                 request: Callable[[Bundles], None]) -> None:
        self._compensation = compensation
        self._node_types = node_types
        self._request = request
        self._since: dict[str, float] = {}
        self._asked: Bundles = []

    def update(self, waiting: dict[str, Requirements], now: float) -> None:
        """``waiting``: job ID -> requirements of the jobs that wait for a node now."""
        self._since = {job: self._since.get(job, now) for job in waiting}
        bundles = compensation_bundles(((req, self._since[job]) for job, req in waiting.items()),
                                       self._node_types, self._compensation, now)
        if bundles != self._asked:
            if bundles:
                logger.warning("Preemptible jobs have waited %g s for spot nodes: asking the autoscaler for %d "
                               "on-demand node(s) in their place (--preemptibleCompensation %g)",
                               GRACE, len(bundles), self._compensation)
            self._request(bundles)
            self._asked = bundles

    def close(self) -> None:
        if self._asked:
            self._request([])
            self._asked = []
