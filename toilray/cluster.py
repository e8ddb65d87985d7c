"""Connecting to Ray: an embedded local instance, or a running cluster."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import ray

from toilray.requirements import Requirements

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    cpus: float
    memory: float
    gpus: float


class RayConnection:
    """Ray for one workflow run. Shuts down only an instance it started itself."""

    def __init__(self, address: str | None) -> None:
        self.started_here = False
        if ray.is_initialized():
            return
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs = {"log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **kwargs)
            self.started_here = True

    def nodes(self) -> list[NodeCapacity]:
        capacities = []
        for node in ray.nodes():
            if not node.get("Alive", True):
                continue
            res = node.get("Resources", {})
            capacities.append(NodeCapacity(res.get("CPU", 0.0), res.get("memory", 0.0), res.get("GPU", 0.0)))
        return capacities

    def node_ip(self) -> str:
        """This process's address as the Ray cluster sees it (where workers can reach us)."""
        return ray.util.get_node_ip_address()

    def total_cpus(self) -> float:
        return float(ray.cluster_resources().get("CPU", 1.0))

    def shutdown(self) -> None:
        if self.started_here and ray.is_initialized():
            ray.shutdown()
            self.started_here = False


def why_unschedulable(req: Requirements, nodes: list[NodeCapacity]) -> str | None:
    """None if some node can run a job with ``req``; otherwise what is missing, in words."""
    if any(req.cores <= n.cpus and req.memory <= n.memory and req.gpus <= n.gpus for n in nodes):
        return None
    if not nodes:
        return "the Ray cluster has no live nodes"
    biggest = max(nodes, key=lambda n: (n.cpus, n.memory, n.gpus))
    problems = []
    if req.cores > max(n.cpus for n in nodes):
        problems.append(f"{req.cores:g} cores (the largest node has {max(n.cpus for n in nodes):g})")
    if req.memory > max(n.memory for n in nodes):
        problems.append(f"{req.memory} bytes of memory (the largest node has {int(max(n.memory for n in nodes))})")
    if req.gpus > max(n.gpus for n in nodes):
        problems.append(f"{req.gpus:g} accelerators (the largest node has {max(n.gpus for n in nodes):g})")
    if not problems:
        problems.append(f"{req.describe()} on one node (the largest offers {biggest.cpus:g} cores, "
                        f"{int(biggest.memory)} bytes of memory, {biggest.gpus:g} accelerators)")
    return "it asks for " + " and ".join(problems)
