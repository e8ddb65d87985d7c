"""Where jobs may run: preemptible marks and requests larger than any node."""

from __future__ import annotations

from toilray.cluster import NodeCapacity, placement_resources, why_unschedulable
from toilray.requirements import Requirements


def req(preemptible: bool, cores: float = 1) -> Requirements:
    return Requirements(cores=cores, memory=10**9, disk=10**9, accelerators=(), preemptible=preemptible)


UNMARKED = [NodeCapacity(4, 8e9, 0)]
MIXED = [NodeCapacity(4, 8e9, 0, preemptible=True), NodeCapacity(2, 8e9, 0, preemptible=False)]
SPOT_ONLY = [NodeCapacity(4, 8e9, 0, preemptible=True)]


def test_unmarked_clusters_place_every_job_anywhere() -> None:
    assert placement_resources(req(False), UNMARKED) == {}
    assert placement_resources(req(True), UNMARKED) == {}


def test_non_preemptible_jobs_are_kept_off_spot_nodes() -> None:
    assert placement_resources(req(False), MIXED) == {"on_demand": 0.001}
    assert placement_resources(req(True), MIXED) == {}


def test_jobs_that_fit_no_allowed_node_are_reported() -> None:
    assert why_unschedulable(req(False, cores=2), MIXED) is None
    assert "largest node has 2" in (why_unschedulable(req(False, cores=3), MIXED) or "")
    assert why_unschedulable(req(True, cores=3), MIXED) is None
    assert "every node of the Ray cluster is marked preemptible" in (why_unschedulable(req(False), SPOT_ONLY) or "")
    assert "1000 cores" in (why_unschedulable(req(True, cores=1000), UNMARKED) or "")
