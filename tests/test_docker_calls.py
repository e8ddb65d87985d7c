"""Toil's docker calls (``toilray.lib.docker``) in real containers: podman through its Docker-API
socket (``.ci/setup-tests`` starts it and builds the stand-in images), as pipelines call them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_script

from toilray.common import Toil
from toilray.job import Job
from toilray.lib import container_engine
from toilray.lib.docker import FORGO, JOB_STORE_LABEL, apiDockerCall, client, dockerCall, dockerCheckOutput

WORKFLOWS = Path(__file__).parent / "workflows"
IMAGE = "docker.io/library/debian:stable-slim"

pytestmark = pytest.mark.skipif(
    container_engine.docker_host() is None,
    reason="no container engine answers (DOCKER_HOST unset, no Docker-API socket): run .ci/setup-tests")


def containers_of(store: Path) -> list[str]:
    """Names of the containers (running or not) that carry the job store's label (``podman ps -a``
    through the engine's API)."""
    listed = client().containers.list(all=True, filters={"label": JOB_STORE_LABEL})
    return [container.name for container in listed if str(store) in container.labels[JOB_STORE_LABEL]]


def wait_until(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def read_back(job: Job, file_id: Any) -> str:
    with open(job.fileStore.readGlobalFile(file_id)) as handle:
        return handle.read()


def pipeline_style(job: Job) -> dict[str, Any]:
    """What toil-vg, toil-lib and toil-rnaseq do with containers, in one job."""
    results: dict[str, Any] = {}
    results["stdout"] = apiDockerCall(job, IMAGE, ["sh", "-c", "echo hello; echo made > made.txt"])
    made = os.path.join(os.getcwd(), "made.txt")  # /data is the job's working directory
    results["made_id"] = job.fileStore.writeGlobalFile(made)
    results["streamed"] = list(apiDockerCall(job, IMAGE, ["sh", "-c", "echo one; echo two"], stream=True))
    results["piped"] = apiDockerCall(job, IMAGE, [["printf", "b\\na\\n"], ["sort"], ["tr", "a-z", "A-Z"]])
    results["demuxed"] = apiDockerCall(job, IMAGE, ["sh", "-c", "echo out; echo err >&2"], stderr=True, demux=True)
    container = apiDockerCall(job, IMAGE, ["sh", "-c", "echo detached; exit 3"], detach=True)
    results["detached"] = (container.wait()["StatusCode"], container.logs())
    container = apiDockerCall(job, IMAGE, ["echo", "logged"], detach=True, stdout=True, streamfile="detached.log")
    with open("detached.log") as handle:
        results["streamfile"] = (container.wait()["StatusCode"], handle.read())
    limit = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    results["memory_limit"] = apiDockerCall(job, IMAGE, ["sh", "-c", limit])
    results["entrypoint"] = apiDockerCall(job, "docker.io/library/bash:4.4", ["-c", "echo moo"])
    results["kept"] = f"kept-{job.jobStoreID[-8:]}"
    apiDockerCall(job, IMAGE, ["true"], deferParam=FORGO, containerName=results["kept"])
    work_dir = job.fileStore.getLocalTempDir()
    with open(os.path.join(work_dir, "in.txt"), "w") as handle:
        handle.write("line 1\nline 2\n")
    results["checked"] = dockerCheckOutput(job, tool=IMAGE, workDir=work_dir, parameters=["wc", "-l", "/data/in.txt"])
    with open(os.path.join(work_dir, "out.txt"), "wb") as outfile:
        dockerCall(job, tool=IMAGE, workDir=work_dir, parameters=["tac", "/data/in.txt"], outfile=outfile)
    with open(os.path.join(work_dir, "out.txt")) as handle:
        results["outfile"] = handle.read()
    results["read_back"] = job.addChildJobFn(read_back, results["made_id"], cores=0.1).rv()
    return results


def test_toil_pipelines_run_their_tools_in_containers(tmp_path: Path, ray_address: str) -> None:
    store = tmp_path / "store"
    options = Job.Runner.getDefaultOptions(f"file:{store}")
    with Toil(options) as toil:
        results = toil.start(Job.wrapJobFn(pipeline_style, cores=0.5, memory="300Mi"))
    assert results["stdout"] == b"hello\n"
    assert results["read_back"] == "made\n"  # written in /data, stored, read back by a child job
    assert b"".join(results["streamed"]) == b"one\ntwo\n"
    assert results["piped"] == b"A\nB\n"
    assert results["demuxed"] == (b"out\n", b"err\n")
    assert results["detached"] == (3, b"detached\n")
    assert results["streamfile"] == (0, "logged\n")  # detach=True with stdout: written to the streamfile
    assert results["memory_limit"] == b"314572800\n"  # the job's memory is the container's limit
    assert results["entrypoint"] == b"moo\n"  # bash:4.4 runs bash with the arguments, as the real image does
    assert results["checked"] == "2 /data/in.txt\n"
    assert results["outfile"] == "line 2\nline 1\n"
    # All containers are removed when the job ends, but the one it asked to keep (FORGO).
    wait_until(lambda: containers_of(store) == [results["kept"]], "the job's other containers are removed")
    client().containers.get(results["kept"]).remove(force=True)


def test_a_missing_image_fails_the_workflow_with_one_line(tmp_path: Path, script_env: dict[str, str]) -> None:
    missing = "docker.io/library/no-such-image:0"
    done = run_script(WORKFLOWS / "containers.py", f"file:{tmp_path / 'store'}", "--image", missing,
                      "--retryCount", "0", env=script_env)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if missing in line]
    assert len(lines) == 1 and "ContainerImageNotFoundError" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_no_engine_fails_the_workflow_with_one_line(tmp_path: Path, script_env: dict[str, str]) -> None:
    nowhere = f"unix://{tmp_path / 'no-engine.sock'}"
    done = run_script(WORKFLOWS / "containers.py", f"file:{tmp_path / 'store'}", "--retryCount", "0",
                      "--setEnv", f"DOCKER_HOST={nowhere}", env=script_env)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if nowhere in line]
    assert len(lines) == 1 and "ContainerEngineError" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def start_sleeping_container(tmp_path: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen[str], Path]:
    store, pid_file = tmp_path / "store", tmp_path / "worker.pid"
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "containers.py"), f"file:{store}", "--sleep",
                               "--pidFile", str(pid_file), "--retryCount", "0", *extra],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: leader.poll() is not None or bool(containers_of(store)),
               "the container runs")
    assert leader.poll() is None, leader.communicate()
    return leader, store


def test_a_killed_worker_leaves_no_container(tmp_path: Path, script_env: dict[str, str]) -> None:
    leader, store = start_sleeping_container(tmp_path, script_env)
    os.kill(int((tmp_path / "worker.pid").read_text()), signal.SIGKILL)
    _, err = leader.communicate(timeout=180)
    assert leader.returncode == 1, err
    wait_until(lambda: containers_of(store) == [], "the killed worker's container is removed")


def test_toilray_kill_leaves_no_container(tmp_path: Path, script_env: dict[str, str]) -> None:
    leader, store = start_sleeping_container(tmp_path, script_env, "--kill_polling_interval", "0.5")
    killed = subprocess.run([sys.executable, "-m", "toilray", "kill", f"file:{store}"], env=script_env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 0, killed.stderr
    _, err = leader.communicate(timeout=180)
    assert leader.returncode == 1 and "was killed" in err, err
    wait_until(lambda: containers_of(store) == [], "the killed workflow's container is removed")


def test_a_job_past_max_job_duration_leaves_no_container(tmp_path: Path, script_env: dict[str, str]) -> None:
    # Long enough for a loaded machine to start the worker and the container before the kill
    # (some 3 s here; start_sleeping_container fails the test if the job ends before it runs).
    leader, store = start_sleeping_container(tmp_path, script_env, "--maxJobDuration", "20")
    _, err = leader.communicate(timeout=180)
    assert leader.returncode == 1 and "--maxJobDuration" in err, err
    wait_until(lambda: containers_of(store) == [], "the overdue job's container is removed")
