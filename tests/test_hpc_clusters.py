"""Ray on real Slurm and Grid Engine allocations (the test clusters of .ci/hpc, on this host):
`toilray hpc ... --wait` submits a batch job whose run starts Ray on every host of the allocation,
runs the workflow there and leaves no Ray process behind, after a success, a failure, or a
cancelled allocation. Slurm's three fake nodes share this host's IP address, so each Ray node
needs ports and a directory of its own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from counting_commands import calls as count_calls
from counting_commands import counting_wrappers

REPO = Path(__file__).resolve().parent.parent
FLOW = REPO / "tests" / "workflows" / "hpc_nodes.py"
CI = REPO / ".ci" / "hpc"
DEADLINE = 600.0


def _cluster(start: str, stop: str, probe: list[str], env: dict[str, str] | None = None) -> Iterator[None]:
    """Start a test cluster unless one answers already; stop it at the end only if started here."""
    if os.geteuid() != 0 and shutil.which(probe[0]) is None:
        pytest.skip(f"{probe[0]} is not installed and installing it needs root")
    running = shutil.which(probe[0]) is not None and subprocess.run(probe, capture_output=True).returncode == 0
    if not running:
        subprocess.run(["bash", str(CI / start)], check=True, capture_output=True, timeout=DEADLINE,
                       env={**os.environ, **(env or {})})
    yield
    if not running:
        subprocess.run(["bash", str(CI / stop)], capture_output=True, timeout=DEADLINE)


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    yield from _cluster("start-slurm.sh", "stop-slurm.sh", ["scontrol", "ping"], {"SLURM_NODES": "3"})


@pytest.fixture(scope="module")
def gridengine() -> Iterator[None]:
    yield from _cluster("start-gridengine.sh", "stop-gridengine.sh", ["qstat", "-f"])


def _temp_root(scheduler: str, job_id: str) -> str:
    """Where the run's Ray nodes keep their directories (toilray.allocation)."""
    return f"/tmp/toilray-{os.environ.get('USER') or os.getuid()}-{scheduler}-{job_id}"


def _ray_processes(root: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if root in command:
            found.append(command[:200])
    return found


def _assert_ray_gone(root: str) -> None:
    """No process of the run's Ray nodes (raylet, GCS, workers) is left, nor their directories."""
    deadline = time.monotonic() + 60
    while (_ray_processes(root) or os.path.exists(root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes(root) == []
    assert not os.path.exists(root)


def _hpc(tmp_path: Path, scheduler: str, *options: str,
         wait: bool = True) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `toilray hpc SCHEDULER OPTIONS -- hpc_nodes.py ...`; the result and the job ID."""
    command = [sys.executable, "-m", "toilray", "hpc", scheduler, *(["--wait"] if wait else []), *options]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=DEADLINE)
    match = re.search(r"Submitted \w+ job (\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    return done, match.group(1)


def _log(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "toilray-hpc").glob("*.log"))


def test_slurm_allocation_runs_200_jobs_on_its_three_nodes(slurm: None, tmp_path: Path) -> None:
    out = tmp_path / "nodes.json"
    done, job_id = _hpc(tmp_path, "slurm", "--nodes", "3", "--cpusPerNode", "1", "--memoryPerNode", "1500M", "--",
                        str(FLOW), f"file:{tmp_path / 'store'}", "--n", "200", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr + _log(tmp_path)
    assert out.exists(), done.stdout + done.stderr + _log(tmp_path)
    result = json.loads(out.read_text())
    assert sum(result["nodes"].values()) == 200
    assert len(result["nodes"]) == 3, result  # every Ray node of the allocation ran jobs
    assert result["cpus"] == 3  # the allocation's cores, not the host's
    assert "Ray runs on the 3 host(s) of the allocation" in _log(tmp_path)
    _assert_ray_gone(_temp_root("slurm", job_id))


def test_slurm_failing_and_cancelled_runs_leave_no_ray(slurm: None, tmp_path: Path) -> None:
    failing, cancelled = tmp_path / "failing", tmp_path / "cancelled"
    failing.mkdir()
    cancelled.mkdir()
    # A long workflow, cancelled with scancel once Ray runs on its nodes; meanwhile a failing one.
    _, long_job = _hpc(cancelled, "slurm", "--nodes", "3", "--", str(FLOW), f"file:{cancelled / 'store'}",
                       "--n", "6", "--seconds", "600", "--out", str(cancelled / "nodes.json"), wait=False)
    try:
        done, failed_job = _hpc(failing, "slurm", "--nodes", "3", "--", str(FLOW), f"file:{failing / 'store'}",
                                "--n", "5", "--fail", "--out", str(failing / "nodes.json"))
        assert done.returncode == 1, done.stdout + done.stderr + _log(failing)
        assert "FailedJobsException" in _log(failing)
        _assert_ray_gone(_temp_root("slurm", failed_job))
        deadline = time.monotonic() + DEADLINE
        while "Ray runs on the 3 host(s)" not in _log(cancelled):
            assert time.monotonic() < deadline, _log(cancelled)
            time.sleep(0.5)
        assert _ray_processes(_temp_root("slurm", long_job))  # it is there to be stopped
    finally:
        subprocess.run(["scancel", long_job], check=True)
    _assert_ray_gone(_temp_root("slurm", long_job))
    assert not (cancelled / "nodes.json").exists()


def test_grid_engine_smp_allocation(gridengine: None, tmp_path: Path) -> None:
    out = tmp_path / "nodes.json"
    done, job_id = _hpc(tmp_path, "gridengine", "--pe", "smp", "--nodes", "1", "--cpusPerNode", "2", "--",
                        str(FLOW), f"file:{tmp_path / 'store'}", "--n", "200", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr + _log(tmp_path)
    result = json.loads(out.read_text())
    assert sum(result["nodes"].values()) == 200
    assert result["cpus"] == 2  # -pe smp 2: the allocation's two slots
    assert "In grid_engine allocation" in _log(tmp_path)
    _assert_ray_gone(_temp_root("grid_engine", job_id))
    failing = tmp_path / "failing"
    failing.mkdir()
    done, job_id = _hpc(failing, "gridengine", "--nodes", "1", "--cpusPerNode", "2", "--", str(FLOW),
                        f"file:{failing / 'store'}", "--n", "5", "--fail", "--out", str(failing / "nodes.json"))
    assert done.returncode == 1, done.stdout + done.stderr
    _assert_ray_gone(_temp_root("grid_engine", job_id))


ELASTIC_FLOW = REPO / "tests" / "workflows" / "elastic_fanout.py"
_COUNTED = ("sbatch", "squeue", "scancel", "sacct")


def _elastic_leftovers() -> list[str]:
    """Directories and processes of elastic runs' Ray nodes (toilray.allocation's temp roots)."""
    roots = [str(p) for p in Path("/tmp").glob(f"toilray-{os.environ.get('USER') or os.getuid()}-slurm-e*")]
    return roots + _ray_processes("-slurm-e")


def test_elastic_slurm_adds_worker_jobs_survives_a_scancel_and_cancels_idle_ones(slurm: None,
                                                                                 tmp_path: Path) -> None:
    """From 0 worker jobs, 300 jobs make toilray submit worker jobs; one of them is cancelled with
    scancel while its jobs run, and the workflow (no retries allowed) still completes; idle worker
    jobs are cancelled while the last job runs, and every one is gone at the end. The scheduler
    commands the run issued are counted by wrappers on PATH."""
    calls = tmp_path / "calls.log"
    real = counting_wrappers(tmp_path / "bin", calls, _COUNTED)
    marks, out, log = tmp_path / "marks", tmp_path / "out.json", tmp_path / "run.log"
    marks.mkdir()
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, str(ELASTIC_FLOW), "--batchSystem", "slurm",
               "--nodeCores", "2", "--nodeMemory", "1G", "--maxNodes", "3", "--nodeIdleTime", "5",
               "--statePollingWait", "1", "--n", "300", "--marks", str(marks), "--out", str(out),
               "--squeue", real["squeue"]]
    # A job bigger than a worker job fails at once, naming the worker jobs' shape; none is submitted.
    big = subprocess.run([*command, "--rootCores", "3", f"file:{tmp_path / 'big'}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=DEADLINE)
    assert big.returncode == 1, big.stderr
    assert "the slurm worker job of --nodeCores/--nodeMemory/--nodeAccelerators (2 core(s), 1 GB)" in big.stderr
    assert count_calls(calls)["sbatch"] == 0
    started = time.monotonic()
    with open(log, "w") as handle:
        run = subprocess.Popen([*command, f"file:{tmp_path / 'store'}"], cwd=tmp_path, env=env, stdout=handle,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE
        while len(list(marks.iterdir())) < 2:  # jobs run in two worker jobs
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        victim = sorted(p.name for p in marks.iterdir())[0]
        subprocess.run([real["scancel"], victim], check=True)
        assert run.wait(DEADLINE) == 0, log.read_text()
    finally:
        if run.poll() is None:
            run.kill()
    elapsed = time.monotonic() - started
    output = log.read_text()
    result = json.loads(out.read_text())
    assert sum(result["jobs"].values()) == 300
    assert victim in result["jobs"] and len(result["jobs"]) >= 2
    assert f"slurm worker job {victim} ended (cancelled, or at its time limit): its Ray node is lost" in output
    # The idle worker jobs went while the last job ran in its own.
    assert result["left"] == [result["self"]], result
    assert "): idle" in output
    counted = count_calls(calls)
    sbatch, squeue, scancel = (counted[name] for name in ("sbatch", "squeue", "scancel"))
    assert counted["sacct"] == 0
    # Worker jobs, not workflow jobs: at most 3 at a time, one replaced, and under load some
    # submitted and cancelled again as the demand came and went (13 sbatch seen once) — far
    # below one per workflow job.
    assert 2 <= sbatch <= 30, counted
    assert scancel <= 30, counted
    assert squeue <= elapsed / 1 + 2, (squeue, elapsed)  # at most one status query per --statePollingWait
    deadline = time.monotonic() + 60
    while (subprocess.run([real["squeue"], "--noheader", "--name=toilray-worker"], capture_output=True,
                          text=True).stdout.strip() or _elastic_leftovers()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert subprocess.run([real["squeue"], "--noheader", "--name=toilray-worker"], capture_output=True,
                          text=True).stdout.strip() == ""
    assert _elastic_leftovers() == []
    # A partition the scheduler refuses ends the run with the scheduler's words, not a wait for nodes.
    refused = subprocess.run([*command, "--slurmPartition", "nosuch", f"file:{tmp_path / 'refused'}"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("toilray: error: SubmissionRefusedError: slurm refused the run's worker jobs"), \
        refused.stderr
    assert "invalid partition" in last.lower() and "Traceback" not in refused.stderr
