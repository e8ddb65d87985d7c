"""Where jobs may run: preemptible marks and requests larger than any node."""

from __future__ import annotations

from pathlib import Path

import pytest

from toilray.cluster import (
    NodeCapacity,
    autoscaler_node_types,
    placement_resources,
    why_no_node_type_fits,
    why_unschedulable,
)
from toilray.exceptions import AutoscalingConfigError
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


def test_node_types_come_from_the_autoscaler_configuration() -> None:
    fake = Path(__file__).resolve().parent.parent / "cluster-configs" / "local-fake.yaml"
    types = autoscaler_node_types(str(fake))
    assert [t.name for t in types] == ["ray.worker.cpu"]  # the head is a current node, not a type to add
    assert why_no_node_type_fits(req(True, cores=2), types) is None
    problem = why_no_node_type_fits(req(True, cores=64), types) or ""
    assert "64 cores (the largest node type the autoscaler may add has 2)" in problem
    assert problem.endswith("the largest node type is ray.worker.cpu")


def test_an_unreadable_autoscaler_configuration_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "cluster.yaml"
    broken.write_text("cluster_name: x\n")
    with pytest.raises(AutoscalingConfigError, match="Cannot read the autoscaler's node types from"):
        autoscaler_node_types(str(broken))
    assert autoscaler_node_types(None) == [] or (Path.home() / "ray_bootstrap_config.yaml").exists()
