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


def test_ray_up_bootstraps_the_aws_configuration_and_launches_its_node_types(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `ray up cluster-configs/aws.yaml` does on AWS before any SSH, against moto's mock AWS:
    Ray's own bootstrap (IAM role and instance profile, key pair, subnets, security groups), then
    its AWS node provider launching one node of every type and terminating them."""
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-west-2",
                        # Ray attaches the managed policy AmazonEC2FullAccess to the role it creates.
                        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
                        "HOME": str(tmp_path)}.items():  # where Ray writes the key pair's .pem
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    config = prepare_config(yaml.safe_load((CONFIGS[0].parent / "aws.yaml").read_text()))
    with mock_aws():
        from ray.autoscaler._private.aws.config import bootstrap_aws
        from ray.autoscaler._private.aws.node_provider import AWSNodeProvider
        from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_NODE_NAME, TAG_RAY_USER_NODE_TYPE

        booted = bootstrap_aws(copy.deepcopy(config))
        for node_type in booted["available_node_types"].values():
            node_config = node_type["node_config"]
            assert node_config["SubnetIds"] and node_config["SecurityGroupIds"] and node_config["KeyName"]
        # The role that lets the head's autoscaler start and stop instances.
        import boto3

        profile = boto3.client("iam").get_instance_profile(InstanceProfileName="ray-autoscaler-v1")
        assert profile["InstanceProfile"]["Roles"]
        provider = AWSNodeProvider(booted["provider"], booted["cluster_name"])
        for name, node_type in booted["available_node_types"].items():
            provider.create_node(node_type["node_config"], {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: name,
                                                            TAG_RAY_NODE_NAME: name}, 1)
        launched = provider.non_terminated_nodes({})
        assert sorted(provider.node_tags(n)[TAG_RAY_USER_NODE_TYPE] for n in launched) == sorted(
            booted["available_node_types"])
        provider.terminate_nodes(launched)
        assert provider.non_terminated_nodes({}) == []
