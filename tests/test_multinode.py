"""Workflows on a real 3-node Ray cluster: a head and two workers, each in its own network
namespace with its own address and one CPU (tests/netns_cluster.py).

One cluster serves the whole module; the test that kills a node runs last. Node ``w2`` is
marked preemptible (the ``preemptible`` resource of cluster-configs/), the others on-demand.
The leader runs on the head (as ``toilray submit`` runs it); the test process itself, outside
every namespace, only reads what the run leaves in the shared file system.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_cluster import ClusterError, NetnsCluster, netns_cluster
from objectstores import free_port

REPO = Path(__file__).resolve().parent.parent
SPREAD = REPO / "tests" / "workflows" / "spread.py"
TOILRAY = str(Path(sys.executable).parent / "toilray")
RUN_TIMEOUT = 420

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="a network-namespace cluster needs root and iproute2")


def expected_total(n: int) -> int:
    return sum(i * i for i in range(n))


@pytest.fixture(scope="module")
def cluster() -> Iterator[NetnsCluster]:
    try:
        with netns_cluster([{"on_demand": 1}, {"on_demand": 1}, {"preemptible": 1}]) as made:
            yield made
    except ClusterError as exc:
        pytest.fail(f"could not bring the test cluster up: {exc}")


def spread_args(cluster: NetnsCluster, store: str, count_dir: Path, n: int, *extra: str) -> list[str]:
    return [sys.executable, str(SPREAD), store, "--rayAddress", cluster.address, "--n", str(n),
            "--countDir", str(count_dir), "--stats", "--defaultPreemptible", "--retryCount", "0",
            "--logLevel", "INFO", *extra]


def executions(count_dir: Path) -> dict[str, list[str]]:
    """Job ID -> the node addresses of each of its executions."""
    ran: dict[str, list[str]] = defaultdict(list)
    for name in os.listdir(count_dir):
        job_id, address, _ = name.rsplit("-", 2)
        ran[job_id].append(address)
    return ran


def stats_records(cluster: NetnsCluster, store: str, env: dict[str, str] | None = None) -> list[dict[str, object]]:
    done = cluster.run(cluster.head, [TOILRAY, "stats", store, "--json"], timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def node_address(record: dict[str, object]) -> str:
    return str(record["node"]).rsplit(" ", 1)[-1]


def check_spread_run(cluster: NetnsCluster, done: subprocess.CompletedProcess[str], records: list[dict[str, object]],
                     count_dir: Path, n: int) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert f"RESULT {expected_total(n)}" in done.stdout
    every_node = {node.ip for node in cluster.nodes}
    assert {node_address(r) for r in records if r["ok"]} == every_node
    spot = cluster.workers[-1].ip
    pinned_at = {node_address(r) for r in records if r["name"] == "pinned"}
    assert pinned_at and spot not in pinned_at, pinned_at
    assert all(len(where) == 1 for where in executions(count_dir).values())


def test_fan_out_with_files_runs_on_every_node_with_a_shared_file_store(cluster: NetnsCluster,
                                                                        tmp_path: Path) -> None:
    count_dir = tmp_path / "ran"
    count_dir.mkdir()
    store = f"file:{tmp_path / 'store'}"
    done = cluster.run(cluster.head, spread_args(cluster, store, count_dir, 300), timeout=RUN_TIMEOUT)
    check_spread_run(cluster, done, stats_records(cluster, store), count_dir, 300)


def test_fan_out_with_files_runs_on_every_node_with_an_s3_store(cluster: NetnsCluster, tmp_path: Path) -> None:
    port = free_port()
    endpoint = f"http://{cluster.head.ip}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
    moto = cluster.popen(cluster.head, [str(Path(sys.executable).parent / "moto_server"), "-H", cluster.head.ip,
                                        "-p", str(port)], tmp_path / "moto.log")
    try:
        count_dir = tmp_path / "ran"
        count_dir.mkdir()
        store = "s3://toilray-multinode/spread"
        set_env = [arg for name, value in env.items() for arg in ("--setEnv", f"{name}={value}")]
        done = cluster.run(cluster.head, spread_args(cluster, store, count_dir, 300, *set_env), timeout=RUN_TIMEOUT,
                           env=env)
        check_spread_run(cluster, done, stats_records(cluster, store, env), count_dir, 300)
    finally:
        moto.terminate()
        moto.wait(timeout=30)


def test_submit_waits_for_the_run_from_another_node(cluster: NetnsCluster, tmp_path: Path) -> None:
    # The script travels in the submission (Ray's working_dir), not through a shared path.
    shipped = tmp_path / "flow"
    shipped.mkdir()
    shutil.copy(SPREAD, shipped / "spread.py")
    count_dir = tmp_path / "ran"
    count_dir.mkdir()
    store = f"file:{tmp_path / 'store'}"
    worker = cluster.workers[0]
    done = cluster.run(worker, [TOILRAY, "submit", "--address", cluster.dashboard, "--wait", "--python",
                                sys.executable, "spread.py", store, "--n", "30", "--countDir", str(count_dir),
                                "--defaultPreemptible"], timeout=RUN_TIMEOUT, cwd=shipped)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"RESULT {expected_total(30)}" in done.stdout
    assert "ended: SUCCEEDED" in done.stderr
    assert len(executions(count_dir)) == 30 + 6


def start_gated_run(cluster: NetnsCluster, tmp_path: Path, n: int,
                    *extra: str) -> tuple[subprocess.Popen[bytes], Path, Path, Path]:
    """A run whose jobs wait for a gate file; returns the leader, its log, the gate, the count dir."""
    count_dir = tmp_path / "ran"
    count_dir.mkdir()
    gate = tmp_path / "gate"
    log = tmp_path / "leader.log"
    leader = cluster.popen(cluster.head, spread_args(cluster, f"file:{tmp_path / 'store'}", count_dir, n,
                                                     "--gate", str(gate), *extra), log)
    return leader, log, gate, count_dir


def wait_for_a_job_on(node_ip: str, leader: subprocess.Popen[bytes], log: Path, count_dir: Path) -> set[str]:
    """Wait until a job runs on the node; the jobs that ran there so far."""
    deadline = time.monotonic() + 180
    while not any(node_ip in where for where in executions(count_dir).values()):
        assert leader.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, f"no job started on {node_ip}"
        time.sleep(0.2)
    return {job for job, where in executions(count_dir).items() if node_ip in where}


def stop(leader: subprocess.Popen[bytes]) -> None:
    if leader.poll() is None:
        leader.kill()
        leader.wait()


def test_a_node_cut_off_mid_job_has_its_job_rerun_elsewhere(cluster: NetnsCluster, tmp_path: Path) -> None:
    # Runs before the node kill below (which leaves the cluster one node short) and after the
    # others, as this node stays cut off. No TCP reset reaches anyone: only keepalives notice.
    silent = cluster.workers[1]
    # The caught job cannot finish (and commit through the shared file system) while cut off.
    leader, log, gate, count_dir = start_gated_run(cluster, tmp_path, 6, "--reach", cluster.address)
    try:
        caught = wait_for_a_job_on(silent.ip, leader, log, count_dir)
        cluster.cut_link(silent)
        cut_at = time.monotonic()
        gate.touch()
        leader.wait(timeout=RUN_TIMEOUT)
        took = time.monotonic() - cut_at
    finally:
        stop(leader)
    output = log.read_text()
    assert leader.returncode == 0, output[-6000:]
    assert f"RESULT {expected_total(6)}" in output
    assert "lost its node" in output
    ran = executions(count_dir)
    assert all(set(ran[job]) - {silent.ip} for job in caught), ran
    print(f"the run ended {took:.1f} s after the cut")
    assert took < 90, f"the run took {took:.0f} s after the cut"


def test_a_killed_node_costs_no_retry_and_its_jobs_rerun_elsewhere(cluster: NetnsCluster, tmp_path: Path) -> None:
    victim = cluster.workers[0]
    leader, log, gate, count_dir = start_gated_run(cluster, tmp_path, 12)
    try:
        lost = wait_for_a_job_on(victim.ip, leader, log, count_dir)
        cluster.kill_node(victim)
        gate.touch()
        leader.wait(timeout=RUN_TIMEOUT)
    finally:
        stop(leader)
    output = log.read_text()
    assert leader.returncode == 0, output[-6000:]
    assert f"RESULT {expected_total(12)}" in output
    assert "lost its node" in output
    ran = executions(count_dir)
    assert all(set(ran[job]) - {victim.ip} for job in lost), ran
    # A job ran again only when its run was cut short with the node, and never twice on a live node.
    for where in ran.values():
        assert where.count(victim.ip) <= 1 and len(where) - where.count(victim.ip) <= 1, where
