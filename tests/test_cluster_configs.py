"""The `ray up` configurations in cluster-configs/ pass Ray's own schema and cross-field checks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIGS = sorted((Path(__file__).parent.parent / "cluster-configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_cluster_config_is_valid_for_ray_up(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    node_types = config["available_node_types"].values()
    # Every config offers nodes for jobs that are not preemptible, and marks its spot nodes.
    assert any("on_demand" in t.get("resources", {}) for t in node_types)
    assert any("preemptible" in t.get("resources", {}) for t in node_types)


def test_there_are_configurations_for_aws_and_gcp() -> None:
    assert {p.name for p in CONFIGS} >= {"aws.yaml", "gcp.yaml"}
