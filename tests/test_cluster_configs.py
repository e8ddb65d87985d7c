"""The `ray up` configurations in cluster-configs/ pass Ray's own schema and cross-field checks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from toilray.cluster import DISK_RESOURCE

# The cloud ones; local-fake.yaml (the autoscaling tests' fake cluster) has no spot nodes or disks.
CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "cluster-configs").glob("*.yaml")
                 if p.name != "local-fake.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_cluster_config_is_valid_for_ray_up(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    node_types = config["available_node_types"].values()
    # Every config offers nodes for jobs that are not preemptible, and marks its spot nodes.
    assert any("on_demand" in t.get("resources", {}) for t in node_types)
    assert any("preemptible" in t.get("resources", {}) for t in node_types)


def _boot_disk_gib(node_config: dict[str, Any]) -> int:
    if "BlockDeviceMappings" in node_config:  # AWS
        return int(node_config["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"])
    return int(node_config["disks"][0]["initializeParams"]["diskSizeGb"])  # GCP


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_node_that_runs_jobs_says_how_much_disk_it_has(path: Path) -> None:
    for name, node_type in yaml.safe_load(path.read_text())["available_node_types"].items():
        resources = node_type.get("resources", {})
        if resources.get("CPU") == 0:
            continue  # the head: no jobs run there
        assert resources.get(DISK_RESOURCE) == _boot_disk_gib(node_type["node_config"]) * 2**30, name


def test_there_are_configurations_for_aws_and_gcp() -> None:
    assert {p.name for p in CONFIGS} >= {"aws.yaml", "gcp.yaml"}
