"""Where jobs may run: preemptible marks and requests larger than any node."""

from __future__ import annotations

from pathlib import Path

import pytest

from toilray.cluster import (
    NodeCapacity,
    NodeType,
    autoscaler_node_types,
    placement_resources,
    why_no_node_type_fits,
    why_unschedulable,
)
from toilray.compensation import GRACE, PreemptibleCompensation, compensation_bundles, compensation_nodes, toil_round
from toilray.config import Config
from toilray.exceptions import AutoscalingConfigError, BadOptionError
from toilray.job import Job
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


SPOT = NodeType("spot", NodeCapacity(4, 16e9, 0, preemptible=True))
ON_DEMAND = NodeType("on-demand", NodeCapacity(8, 32e9, 0, preemptible=False))
ONE_NODE = {"CPU": 4, "on_demand": 0.001, "memory": 16e9}


def test_compensation_rounds_as_toil_does() -> None:
    # Toil's manual: 0.5 compensates two missing preemptible nodes with one; 1.0 replaces each.
    assert [compensation_nodes(deficit, 0.5) for deficit in (0, 1, 2, 3, 4)] == [0, 1, 1, 2, 2]
    assert compensation_nodes(3, 1.0) == 3 and compensation_nodes(5, 0.0) == 0
    assert toil_round(2.5) == 3 and toil_round(-2.5) == -3 and toil_round(2.4) == 2


def test_spot_nodes_count_as_missing_only_after_the_grace_period() -> None:
    waiting = [(req(True), 0.0)] * 12  # 12 cores: three spot nodes' worth
    assert compensation_bundles(waiting, [SPOT, ON_DEMAND], 1.0, now=GRACE - 1) == []
    assert compensation_bundles(waiting, [SPOT, ON_DEMAND], 1.0, now=GRACE) == [ONE_NODE] * 3
    assert compensation_bundles(waiting, [SPOT, ON_DEMAND], 0.5, now=GRACE) == [ONE_NODE] * 2
    assert compensation_bundles(waiting, [SPOT, ON_DEMAND], 0.0, now=GRACE) == []


def test_only_preemptible_jobs_that_an_on_demand_type_could_hold_are_compensated() -> None:
    assert compensation_bundles([(req(False), 0.0)], [SPOT, ON_DEMAND], 1.0, now=GRACE) == []
    assert compensation_bundles([(req(True), 0.0)], [SPOT], 1.0, now=GRACE) == []
    small = NodeType("small", NodeCapacity(2, 8e9, 0, preemptible=False))
    assert compensation_bundles([(req(True, cores=4), 0.0)], [SPOT, small], 1.0, now=GRACE) == []


def test_the_request_follows_the_waiting_jobs_and_is_withdrawn_at_the_end() -> None:
    asked: list[list[dict[str, float]]] = []
    following = PreemptibleCompensation(1.0, [SPOT, ON_DEMAND], asked.append)
    following.update({"a": req(True), "b": req(True)}, now=0.0)
    following.update({"a": req(True), "b": req(True)}, now=GRACE)
    following.update({"a": req(True), "b": req(True), "c": req(True)}, now=GRACE + 1)  # c is new: not late
    following.update({}, now=GRACE + 2)  # they run (on the nodes asked for)
    following.update({"d": req(True)}, now=GRACE + 3)
    following.update({"d": req(True)}, now=2 * GRACE + 3)
    following.close()
    assert asked == [[ONE_NODE], [], [ONE_NODE], []]


def test_preemptible_compensation_is_a_fraction() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    assert Config.from_options(parser.parse_args(["store", "--preemptibleCompensation", "0.5"])) \
        .leader_limits().preemptible_compensation == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["store", "--preemptibleCompensation", "1.5"])
    options = Job.Runner.getDefaultOptions("store")
    options.preemptibleCompensation = "2"  # set in a script's code
    with pytest.raises(BadOptionError, match="--preemptibleCompensation 2: must be between 0 and 1"):
        Config.from_options(options)
