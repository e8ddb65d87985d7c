"""End-to-end behaviour of the core engine: failure, restart, crashes, resources, errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_script

from toilray.common import Toil
from toilray.exceptions import (
    FailedJobsException,
    JobGraphDeadlockException,
    JobStoreExistsException,
    NoSuchJobStoreException,
)
from toilray.job import Job
from toilray.jobStores.jobStore import JobStore

WORKFLOWS = Path(__file__).parent / "workflows"


def _only_failure_report(store: Path) -> str:
    """The failure report of the one job that failed in the (local) job store at ``store``."""
    (report,) = JobStore(f"file:{store}").failure_reports().values()
    return report


def executions(count_dir: Path) -> Counter[str]:
    """How many times each recorded job ran, keyed by the name part before the last '-'."""
    return Counter(name.rsplit("-", 1)[0] for name in os.listdir(count_dir))


def test_failed_job_keeps_store_and_restart_runs_fixed_code_only(tmp_path: Path, script_env: dict[str, str]) -> None:
    script = tmp_path / "flaky.py"
    script.write_text((WORKFLOWS / "flaky.py").read_text())
    store, counts = tmp_path / "store", tmp_path / "counts"
    counts.mkdir()

    first = run_script(script, f"file:{store}", "--countDir", str(counts), env=script_env)
    assert first.returncode != 0
    assert "flaky" in first.stderr and "RuntimeError: boom from flaky" in first.stderr
    assert "---TOIL WORKER OUTPUT LOG---" in first.stderr
    assert "flaky is about to fail" in first.stderr  # the job's own output reaches the user
    assert re.search(r"contains 1 failed jobs: 'flaky'", first.stderr)
    assert store.is_dir()
    ran = executions(counts)
    assert ran["flaky"] == 2  # --retryCount 1: two attempts
    assert all(ran[f"work{i}"] == 1 for i in range(10))  # independent jobs still finished

    script.write_text(script.read_text().replace('raise RuntimeError("boom from flaky")  # BUG', "pass"))
    second = run_script(script, f"file:{store}", "--countDir", str(counts), "--restart", env=script_env)
    assert second.returncode == 0, second.stderr
    assert "RESULT 145" in second.stdout  # 0+1+...+9 plus the fixed job's 100
    ran = executions(counts)
    assert ran["root"] == 1
    assert all(ran[f"work{i}"] == 1 for i in range(10))
    assert ran["flaky"] == 3
    assert not store.exists()  # --clean onSuccess


def test_leader_sigkill_then_restart_reruns_no_committed_job(tmp_path: Path, script_env: dict[str, str]) -> None:
    store, counts = tmp_path / "store", tmp_path / "counts"
    counts.mkdir()
    args = [f"file:{store}", "--countDir", str(counts), "--n", "200", "--seconds", "0.1"]
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "fan_out.py"), *args], env=script_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until a good part of the jobs ran, then kill the leader without warning.
    while len(os.listdir(counts)) < 60:
        assert leader.poll() is None, leader.communicate()
    leader.send_signal(signal.SIGKILL)
    leader.wait()
    committed_before_restart = set(JobStore(f"file:{store}").committed_ids())
    assert committed_before_restart

    again = run_script(WORKFLOWS / "fan_out.py", *args, "--restart", env=script_env)
    assert again.returncode == 0, again.stderr
    assert f"RESULT {sum(range(200))}" in again.stdout
    runs_by_job: Counter[str] = Counter(name.split("-")[1] for name in os.listdir(counts))
    assert len(runs_by_job) == 200
    rerun_committed = [j for j in committed_before_restart if runs_by_job.get(j, 0) > 1]
    assert rerun_committed == []


def test_bad_worker_kills_are_retried_to_the_right_answer(tmp_path: Path, script_env: dict[str, str]) -> None:
    store, counts = tmp_path / "store", tmp_path / "counts"
    counts.mkdir()
    done = run_script(WORKFLOWS / "fan_out.py", f"file:{store}", "--countDir", str(counts), "--n", "50",
                      "--badWorker", "0.3", "--retryCount", "10", env=script_env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"RESULT {sum(range(50))}" in done.stdout
    assert "The worker running the job died" in done.stderr  # workers really were killed


def test_new_run_on_existing_store_and_restart_of_missing_store(tmp_path: Path, script_env: dict[str, str]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    options = Job.Runner.getDefaultOptions(f"file:{store}")
    with pytest.raises(JobStoreExistsException) as exists, Toil(options):
        pass
    assert "\n" not in str(exists.value) and str(store) in str(exists.value)

    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'missing'}")
    options.restart = True
    with pytest.raises(NoSuchJobStoreException) as missing, Toil(options):
        pass
    assert "\n" not in str(missing.value) and "missing" in str(missing.value)

    counts = tmp_path / "counts"
    counts.mkdir()
    proc = run_script(WORKFLOWS / "fan_out.py", f"file:{store}", "--countDir", str(counts), env=script_env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "toilray: error: JobStoreExistsException: The job store")
    assert "Traceback" not in proc.stderr


def _touch(path: str) -> None:
    open(path, "w").close()


@pytest.mark.parametrize("shape", ["follow-on cycle", "two roots", "checkpoint with successors"])
def test_invalid_graphs_fail_before_any_job_runs(tmp_path: Path, shape: str, ray_address: str) -> None:
    marker = str(tmp_path / "ran")
    a = Job.wrapFn(_touch, marker)
    b = Job.wrapFn(_touch, marker)
    if shape == "follow-on cycle":
        a.addFollowOn(b)
        b.addChild(a)
    elif shape == "two roots":
        c = Job.wrapFn(_touch, marker)
        a.addChild(c)
        b.addChild(c)
    else:
        checkpoint = a.addChild(Job.wrapFn(_touch, marker, checkpoint=True))
        checkpoint.addChild(b)
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    with pytest.raises(JobGraphDeadlockException), Toil(options) as toil:
        toil.start(a)
    assert not os.path.exists(marker)


def _make_cycle_at_run_time(job: Job) -> None:
    first, second = Job(), Job()
    job.addChild(first)
    first.addFollowOn(second)
    second.addChild(first)


def test_cycle_created_at_run_time_fails_that_job(tmp_path: Path, ray_address: str) -> None:
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.retryCount = 0
    with pytest.raises(FailedJobsException) as failed, Toil(options) as toil:
        toil.start(Job.wrapJobFn(_make_cycle_at_run_time))
    assert "_make_cycle_at_run_time" in str(failed.value)
    report = _only_failure_report(tmp_path / "store")
    assert "JobGraphDeadlockException" in report


def test_two_one_core_jobs_run_together_and_max_cores_serialises_them(tmp_path: Path,
                                                                     script_env: dict[str, str]) -> None:
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    together = run_script(WORKFLOWS / "overlap.py", f"file:{tmp_path / 's1'}", "--dir", str(tmp_path / "d1"),
                          env=script_env)
    assert together.returncode == 0, together.stderr
    assert "RESULT [True, True]" in together.stdout

    apart = run_script(WORKFLOWS / "overlap.py", f"file:{tmp_path / 's2'}", "--dir", str(tmp_path / "d2"),
                       "--wait", "3", "--maxCores", "1", env=script_env)
    assert apart.returncode == 0, apart.stderr
    assert "RESULT [False, False]" in apart.stdout


def _nothing() -> None:
    return None


def test_job_larger_than_any_node_fails_at_once(tmp_path: Path, ray_address: str) -> None:
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    root = Job()
    root.addChildFn(_nothing, cores=1000)
    with pytest.raises(FailedJobsException) as failed, Toil(options) as toil:
        toil.start(root)
    assert "_nothing" in str(failed.value)
    report = _only_failure_report(tmp_path / "store")
    assert "can never run: it asks for 1000 cores (the largest node has 2)" in report


def test_five_thousand_job_fan_out_completes(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    done = run_script(WORKFLOWS / "fan_out.py", f"file:{tmp_path / 'store'}", "--countDir", str(counts),
                      "--n", "5000", "--logWarning", env=script_env)
    assert done.returncode == 0, done.stderr
    assert f"RESULT {sum(range(5000))}" in done.stdout
    assert len(os.listdir(counts)) == 5000
    rss_kib = int(re.search(r"LEADER_MAXRSS_KIB (\d+)", done.stdout).group(1))
    print(f"leader peak RSS for 5,000 jobs: {rss_kib / 1024:.0f} MiB")


def _hang() -> None:
    # A job that never finishes on its own.
    threading.Event().wait()


def test_max_job_duration_kills_an_overlong_job(tmp_path: Path, ray_address: str) -> None:
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.maxJobDuration = 2
    options.retryCount = 1
    with pytest.raises(FailedJobsException, match="_hang"), Toil(options) as toil:
        toil.start(Job.wrapFn(_hang, cores=0.1))
    report = _only_failure_report(tmp_path / "store")
    assert "attempt 2 of 2" in report
    assert "ran longer than --maxJobDuration (2 s)" in report


def _answer() -> int:
    return 42


def test_start_of_an_encapsulated_root_returns_the_inner_value(tmp_path: Path, ray_address: str) -> None:
    inner = Job.wrapFn(_answer)
    inner.addChild(Job())
    with Toil(Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")) as toil:
        assert toil.start(inner.encapsulate()) == 42


def test_checkpoint_reruns_its_subtree_after_a_grandchild_exhausts_its_retries(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    counts, counter = tmp_path / "counts", tmp_path / "counter"
    counts.mkdir()
    done = run_script(WORKFLOWS / "checkpoint.py", f"file:{tmp_path / 'store'}", "--countDir", str(counts),
                      "--counter", str(counter), "--retryCount", "1", env=script_env)
    assert done.returncode == 0, done.stderr
    assert "RESULT grandchild succeeded on attempt 3" in done.stdout
    assert "rerunning checkpoint" in done.stderr
    assert executions(counts) == Counter({"checkpoint": 2, "child": 2, "grandchild": 3})


@pytest.mark.parametrize("failures_before_kill", [1, 2])
def test_checkpoint_rerun_survives_a_leader_crash(tmp_path: Path, script_env: dict[str, str],
                                                 failures_before_kill: int) -> None:
    counts, counter = tmp_path / "counts", tmp_path / "counter"
    counts.mkdir()
    args = [f"file:{tmp_path / 'store'}", "--countDir", str(counts), "--counter", str(counter), "--retryCount", "1"]
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "checkpoint.py"), *args], env=script_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Kill the leader after the grandchild's first failure, or after both (the rerun has begun).
    while not counter.exists() or counter.stat().st_size < failures_before_kill:
        assert leader.poll() is None, leader.communicate()
    leader.send_signal(signal.SIGKILL)
    leader.wait()
    again = run_script(WORKFLOWS / "checkpoint.py", *args, "--restart", env=script_env)
    assert again.returncode == 0, again.stderr
    assert "RESULT grandchild succeeded on attempt 3" in again.stdout
    ran = executions(counts)
    assert ran["grandchild"] == 3 and ran["checkpoint"] <= 2


def _append(path: str, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text + "\n")


def _defer_then_return(job: Job, path: str) -> str:
    job.defer(_append, path, "returned")
    job.defer(_append, path, "returned")  # registering twice runs twice
    return "ok"


def _defer_then_raise(job: Job, path: str) -> None:
    job.defer(_append, path, "raised")
    raise ValueError("this attempt fails")


def _defer_then_die(job: Job, path: str) -> None:
    job.defer(_append, path, "killed")
    os.kill(os.getpid(), signal.SIGKILL)


def test_deferred_functions_run_however_the_attempt_ends(tmp_path: Path, ray_address: str) -> None:
    path = str(tmp_path / "deferred.txt")
    root = Job()
    root.addChildJobFn(_defer_then_return, path, cores=0.1)
    root.addChildJobFn(_defer_then_raise, path, cores=0.1)
    root.addChildJobFn(_defer_then_die, path, cores=0.1)
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.retryCount = 0
    with pytest.raises(FailedJobsException), Toil(options) as toil:
        toil.start(root)
    assert sorted(Path(path).read_text().split()) == ["killed", "raised", "returned", "returned"]


def test_real_time_logging_reaches_the_leader_while_the_job_runs(tmp_path: Path,
                                                                   script_env: dict[str, str]) -> None:
    go = tmp_path / "go"
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "realtime.py"), f"file:{tmp_path / 'store'}",
                               "--goFile", str(go), "--realTimeLogging"], env=script_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert leader.stderr is not None
    for line in leader.stderr:
        if "live message from the running job" in line:
            go.touch()  # the job only finishes once the message was seen
            break
    out, _ = leader.communicate(timeout=120)
    assert leader.returncode == 0
    assert "RESULT heard" in out


def _link(job: Job, index: int, last: int, count_dir: str) -> int:
    runs = len([n for n in os.listdir(count_dir) if n.startswith(f"{index}-")])
    Path(count_dir, f"{index}-{runs}").touch()
    if index == last // 2 and runs == 0:
        raise RuntimeError("the middle of the chain fails once")
    if index < last:
        job.addFollowOnJobFn(_link, index + 1, last, count_dir, cores=0.1, memory="50M")
    return index


def test_chain_of_follow_ons_runs_each_job_once_and_retries_a_failure(tmp_path: Path, ray_address: str) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    with Toil(Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")) as toil:
        assert toil.start(Job.wrapJobFn(_link, 1, 300, str(counts), cores=0.1, memory="50M")) == 1
    ran = Counter(name.split("-")[0] for name in os.listdir(counts))
    assert len(ran) == 300
    assert ran.pop("150") == 2 and set(ran.values()) == {1}


def test_write_logs_keeps_each_failed_attempts_output(tmp_path: Path, script_env: dict[str, str]) -> None:
    import gzip

    counts = tmp_path / "counts"
    counts.mkdir()
    for flag, directory in (("--writeLogs", tmp_path / "logs"), ("--writeLogsGzip", tmp_path / "gz")):
        run_script(WORKFLOWS / "flaky.py", f"file:{tmp_path / flag.strip('-')}", "--countDir", str(counts),
                   flag, str(directory), env=script_env)
        names = sorted(os.listdir(directory))
        assert [n.split("_")[0] for n in names] == ["flaky", "flaky"]
        assert names[0].endswith("attempt1.log" + (".gz" if "Gzip" in flag else ""))
        for name in names:
            raw = (directory / name).read_bytes()
            data = gzip.decompress(raw) if name.endswith(".gz") else raw
            assert b"flaky is about to fail" in data
    kept = os.listdir(tmp_path / "writeLogs" / "logs")
    assert len(kept) == 2  # both attempts' output stays in the job store


class _ReportsRequirements(Job):
    def run(self, fileStore: object) -> tuple[int, float, int]:
        return self.memory, self.cores, self.disk


def _reports_requirements(job: Job) -> tuple[int, float, int]:
    return job.memory, job.cores, job.disk


def _parent_of_chained(job: Job) -> dict[str, object]:
    # The lone successor made here runs in the same Ray task, right after this job.
    chained = job.addFollowOnJobFn(_reports_requirements)
    return {"own": (job.memory, job.cores, job.disk), "chained": chained.rv()}


def _requirements_root(job: Job) -> dict[str, object]:
    return {
        "class": job.addChild(_ReportsRequirements()).rv(),
        "function": job.addChildJobFn(_reports_requirements).rv(),
        "parent": job.addChildJobFn(_parent_of_chained).rv(),
    }


def test_jobs_see_the_runs_default_requirements_on_the_worker(tmp_path: Path, ray_address: str) -> None:
    from toilray.stats import read_records

    parser = Job.Runner.getDefaultArgumentParser()
    options = parser.parse_args([f"file:{tmp_path / 'store'}", "--defaultMemory", "3G", "--defaultCores", "0.5",
                                 "--defaultDisk", "5G", "--stats"])
    expected = (3 * 10**9, 0.5, 5 * 10**9)
    with Toil(options) as toil:
        values = toil.start(Job.wrapJobFn(_requirements_root))
        store = toil.jobStore
        records = read_records(store)
    assert values["class"] == expected
    assert values["function"] == expected
    assert values["parent"] == {"own": expected, "chained": expected}
    tasks = {r["name"]: r["task"] for r in records if r["name"] in ("_parent_of_chained", "_reports_requirements")}
    parent_task = tasks["_parent_of_chained"]
    chained = [r for r in records if r["name"] == "_reports_requirements" and r["task"] == parent_task]
    assert len(chained) == 1  # the follow-on really ran chained, in its parent's task


def _fails_once_counted(job: Job, count_dir: str) -> None:
    Path(count_dir, f"attempt-{len(os.listdir(count_dir))}").touch()
    raise RuntimeError("the chained child fails")


def _makes_a_failing_child(job: Job, count_dir: str) -> None:
    job.addChildJobFn(_fails_once_counted, count_dir)  # the lone new job: it runs chained


def test_a_chained_job_without_retries_runs_once(tmp_path: Path, ray_address: str) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.retryCount = 0
    with pytest.raises(FailedJobsException), Toil(options) as toil:
        toil.start(Job.wrapJobFn(_makes_a_failing_child, str(counts)))
    assert os.listdir(counts) == ["attempt-0"]
