"""Jobs bigger than every current node on an autoscaling cluster: Ray's fake-multinode
autoscaler (cluster-configs/local-fake.yaml: a head of 1 CPU, up to one added node of 2 CPUs),
in a network namespace of its own (tests/netns_cluster.py), so the raylets it adds are torn
down with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_cluster import ClusterError, NetnsCluster, netns_cluster

REPO = Path(__file__).resolve().parent.parent
SIZED = REPO / "tests" / "workflows" / "sized.py"
FAKE_CONFIG = REPO / "cluster-configs" / "local-fake.yaml"
TOILRAY = str(Path(sys.executable).parent / "toilray")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="a network-namespace cluster needs root and iproute2")


@pytest.fixture(scope="module")
def autoscaling() -> Iterator[NetnsCluster]:
    try:
        with netns_cluster([{}], extra_env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
                           head_args=[f"--autoscaling-config={FAKE_CONFIG}"]) as made:
            yield made
    except ClusterError as exc:
        pytest.fail(f"could not bring the autoscaling cluster up: {exc}")


def sized_args(cluster: NetnsCluster, store: str, cores: int) -> list[str]:
    return [sys.executable, str(SIZED), store, "--cores", str(cores), "--rayAddress", cluster.address,
            "--autoscalingConfig", str(FAKE_CONFIG), "--retryCount", "0"]


def test_a_job_bigger_than_every_node_waits_for_the_autoscaler(autoscaling: NetnsCluster, tmp_path: Path) -> None:
    assert len(autoscaling.alive_nodes()) == 1
    store_dir = tmp_path / "store"
    log = tmp_path / "leader.log"
    leader = autoscaling.popen(autoscaling.head, sized_args(autoscaling, f"file:{store_dir}", 2), log)
    waiting_seen = False
    try:
        deadline = time.monotonic() + 180
        while leader.poll() is None and time.monotonic() < deadline:
            if store_dir.exists():
                done = subprocess.run([TOILRAY, "status", str(store_dir), "--json"], capture_output=True, text=True)
                if done.returncode == 0 and json.loads(done.stdout).get("waitingForNodes", 0) >= 1:
                    waiting_seen = True
                    shown = subprocess.run([TOILRAY, "status", str(store_dir)], capture_output=True, text=True)
                    assert "Waiting for nodes: 1 job(s) fit no current node" in shown.stdout, shown.stdout
                    break
            time.sleep(0.3)
        leader.wait(timeout=180)
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
    output = log.read_text()
    assert leader.returncode == 0, output[-5000:]
    assert "RESULT big job ran" in output
    assert waiting_seen, "toilray status never showed the job waiting for a node"
    # The added node goes again once idle (idle_timeout_minutes: 0.2).
    deadline = time.monotonic() + 180
    while len(autoscaling.alive_nodes()) > 1:
        assert time.monotonic() < deadline, "the added node was not removed when idle"
        time.sleep(2)


def test_a_job_bigger_than_every_node_type_fails_at_once(autoscaling: NetnsCluster, tmp_path: Path) -> None:
    done = autoscaling.run(autoscaling.head, sized_args(autoscaling, f"file:{tmp_path / 'store'}", 64), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "can never run: it asks for 64 cores" in done.stderr
    assert "the largest node type is ray.worker.cpu" in done.stderr
