"""Runs without --rayAddress share a toilray-managed local Ray (``toilray.local_ray``).

Every test gets a state directory of its own (TOILRAY_HOME) and marks the environment of the
runs it starts, so the Ray processes they start (and nothing of the other Rays on this machine)
can be found by that mark; whatever a test started is stopped at its end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import REPO, run_script

from toilray import local_ray

MARK = "TOILRAY_TEST_MANAGED_RAY"

FLOW = """
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from toilray.common import Toil
from toilray.job import Job


def report(job, out, started, wait_for, block):
    import ray

    import toilray

    Path(started).write_text("started")
    deadline = time.monotonic() + 300
    while wait_for and not Path(wait_for).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        import helper
        helper_value = helper.VALUE
    except ImportError:
        helper_value = None
    Path(out).write_text(json.dumps({
        "session": ray._private.worker.global_worker.node.get_session_dir_path(),
        "edit": getattr(toilray, "EDIT", 0),
        "toilray": toilray.__file__,
        "mark": os.environ.get("RUN_MARK"),
        "tmp": tempfile.gettempdir(),
        "job_tmp": job.fileStore.getLocalTempDir(),
        "helper": helper_value,
        "pid": os.getpid(),
        "parent_pid": os.getppid(),
        "parent": open(f"/proc/{os.getppid()}/cmdline").read().replace("\\0", " "),
    }))
    while block:
        time.sleep(1)


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--started")
    parser.add_argument("--waitFor", default="")
    parser.add_argument("--block", action="store_true")
    options = parser.parse_args()
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(report, options.out, options.started, options.waitFor, options.block,
                                 cores=0.5, memory="50M", disk="10M"))
"""

KILLED = """
import os
import signal
import subprocess
import sys

from toilray.common import Toil
from toilray.job import Job


def killed(job, pid_file):
    left = subprocess.Popen(["sleep", "600"])
    with open(pid_file, "w") as handle:
        handle.write(str(left.pid))
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    options = Job.Runner.getDefaultOptions(sys.argv[1])
    options.retryCount = 0
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(killed, sys.argv[2]))
"""


def _until(condition: Callable[[], object], what: str, limit: float = 180.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _marked(mark: str, names: tuple[str, ...] = ()) -> set[int]:
    """Processes whose environment carries ``mark`` (of those named ``names``, if given)."""
    found = set()
    for process in psutil.process_iter(["name"]):
        try:
            if (not names or process.info["name"] in names) and process.environ().get(MARK) == mark:
                found.add(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _fork_servers(mark: str) -> set[int]:
    found = set()
    for pid in _marked(mark):
        try:
            if "toilray.forkserver" in " ".join(psutil.Process(pid).cmdline()):
                found.add(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _ray_daemons(mark: str) -> set[int]:
    return _marked(mark, ("gcs_server", "raylet"))


class Runs:
    """Workflow runs in one state directory, with marked environments."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.home = tmp_path / "toilray-home"
        self.mark = uuid.uuid4().hex
        self.script = tmp_path / "flow.py"
        self.script.write_text(FLOW)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "TOILRAY_EMBEDDED_RAY")}
        self.env.update({"TOILRAY_HOME": str(self.home), MARK: self.mark, "PYTHONUNBUFFERED": "1"})
        self._count = 0

    def args(self, *extra: str) -> tuple[list[str], Path, Path]:
        self._count += 1
        name = f"run{self._count}"
        out, started = self.tmp_path / f"{name}.json", self.tmp_path / f"{name}.started"
        return [f"file:{self.tmp_path / name}", "--out", str(out), "--started", str(started), *extra], out, started

    def run(self, *extra: str, script: Path | None = None,
            env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
        args, out, _ = self.args(*extra)
        # Not from the checkout's root: Ray puts a leader's working directory first on its workers' path.
        done = run_script(script or self.script, *args, env=env or self.env, cwd=self.tmp_path)
        assert done.returncode == 0, done.stderr
        return done, json.loads(out.read_text())

    def state(self) -> dict[str, object] | None:
        path = self.home / "local-ray.json"
        return json.loads(path.read_text()) if path.exists() else None

    def running(self) -> bool:
        status = subprocess.run([sys.executable, "-m", "toilray", "local-ray", "status"], env=self.env,
                                capture_output=True, text=True, timeout=120)
        return status.stdout.startswith("running at")

    def stop(self) -> None:
        """Stop the managed Ray of this state directory, and whatever else the runs left."""
        saved = os.environ.get("TOILRAY_HOME")
        os.environ["TOILRAY_HOME"] = str(self.home)
        try:
            local_ray.stop()
        finally:
            if saved is None:
                del os.environ["TOILRAY_HOME"]
            else:
                os.environ["TOILRAY_HOME"] = saved
        for pid in _marked(self.mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    made = Runs(tmp_path)
    try:
        yield made
    finally:
        made.stop()


def test_two_runs_in_a_row_share_one_local_ray_which_outlives_them(runs: Runs) -> None:
    first, seen = runs.run()
    assert "Started a local Ray for toilray runs at" in first.stderr
    assert "it stops after 10 minutes without a workflow" in first.stderr
    state = runs.state()
    assert state is not None and seen["session"] == state["session_dir"]
    daemons = _ray_daemons(runs.mark)
    assert len(daemons) == 2, "the local Ray's GCS and raylet outlive the run that started them"

    second, seen_again = runs.run()
    assert "Started a local Ray" not in second.stderr
    assert f"Using the local Ray instance at {state['address']}" in second.stderr
    assert seen_again["session"] == seen["session"]
    assert _ray_daemons(runs.mark) == daemons, "the second run started no GCS or raylet of its own"

    stopped = subprocess.run([sys.executable, "-m", "toilray", "local-ray", "stop"], env=runs.env,
                             capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    _until(lambda: not _ray_daemons(runs.mark), "the local Ray's processes outlived 'toilray local-ray stop'")


def test_the_local_rays_workers_are_forks_of_one_warm_process_one_per_run(runs: Runs) -> None:
    _, first = runs.run()
    _, second = runs.run()
    for seen in (first, second):
        assert "toilray.forkserver" in str(seen["parent"]), seen["parent"]
    assert first["parent"] == second["parent"], "one fork server for both runs' workers"
    assert first["pid"] != second["pid"], "each run's job ran in a worker process of its own"


def test_switched_off_the_local_rays_workers_are_rays_own(runs: Runs) -> None:
    _, seen = runs.run(env={**runs.env, "TOILRAY_FORKSERVER": "0"})
    assert "/raylet " in str(seen["parent"]), seen["parent"]


def test_what_a_killed_worker_left_running_ends_with_it(runs: Runs, tmp_path: Path) -> None:
    # Ray ends a dead worker's process group: a worker forked from the warm process has one of its own.
    _, before = runs.run()
    script, pid_file = tmp_path / "killed.py", tmp_path / "left.pid"
    script.write_text(KILLED)
    done = run_script(script, f"file:{tmp_path / 'store'}", str(pid_file), env=runs.env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    left = int(pid_file.read_text())

    def gone() -> bool:
        try:
            return psutil.Process(left).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    _until(gone, "the killed worker's child outlived it")
    _, after = runs.run()
    assert after["parent_pid"] == before["parent_pid"], "the fork server went with the killed worker"


def test_a_workers_fork_server_started_by_a_runs_worker_serves_the_runs_after_it(runs: Runs) -> None:
    # The first server is started by Ray's prestarted workers, which have no job; one that has gone (here
    # killed, with the idle workers it had forked) is started again by a worker of a run, whose job has
    # ended by the next run.
    _, first = runs.run()
    for pid in _fork_servers(runs.mark):
        server = psutil.Process(pid)
        for child in server.children():
            child.kill()
        server.kill()
    _until(lambda: not _fork_servers(runs.mark), "the workers' fork server outlived SIGKILL")
    _, second = runs.run()
    _, third = runs.run()
    assert "toilray.forkserver" in str(third["parent"]), third["parent"]
    assert second["parent_pid"] == third["parent_pid"] != first["parent_pid"]


def test_the_local_ray_stops_after_its_idle_timeout(runs: Runs) -> None:
    done, seen = runs.run("--localRayIdleTimeout", "3")
    assert "it stops after 3 s without a workflow" in done.stderr
    state = runs.state()
    assert state is not None and seen["session"] == state["session_dir"]
    _until(lambda: not _ray_daemons(runs.mark), "the local Ray outlived its idle timeout")
    assert not runs.running()
    _until(lambda: not _fork_servers(runs.mark), "its workers' fork server outlived the local Ray")


def test_a_killed_leader_does_not_keep_the_local_ray_running(runs: Runs) -> None:
    args, out, _ = runs.args("--localRayIdleTimeout", "3", "--block")
    leader = subprocess.Popen([sys.executable, str(runs.script), *args], env=runs.env, cwd=runs.tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until(lambda: out.exists() or leader.poll() is not None, "the job never started")
        assert out.exists(), f"the leader exited with status {leader.returncode}"
        state = runs.state()
        assert state is not None and json.loads(out.read_text())["session"] == state["session_dir"]
        assert _ray_daemons(runs.mark)
    finally:
        leader.kill()
        leader.wait()
    _until(lambda: not _ray_daemons(runs.mark), "the local Ray outlived a killed leader's idle timeout")
    assert not runs.running()


def test_a_run_replaces_the_record_of_a_local_ray_that_was_killed(runs: Runs) -> None:
    _, seen = runs.run()
    state = runs.state()
    assert state is not None
    os.kill(int(str(state["pid"])), signal.SIGKILL)
    _until(lambda: not _ray_daemons(runs.mark), "the killed local Ray's processes outlived it")
    assert runs.state() is not None, "the record of the killed instance is still there"
    done, seen_again = runs.run()
    assert "Started a local Ray for toilray runs at" in done.stderr
    assert seen_again["session"] != seen["session"]
    assert [p.name for p in runs.home.glob("local-ray-*.leases")] == [f"local-ray-{runs.state()['pid']}.leases"]


def test_an_embedded_ray_leaves_nothing_running(runs: Runs) -> None:
    for extra, env in ((("--embeddedRay",), runs.env), ((), {**runs.env, "TOILRAY_EMBEDDED_RAY": "1"})):
        done, seen = runs.run(*extra, env=env)
        assert "local Ray" not in done.stderr
        assert runs.state() is None and not runs.running()
        _until(lambda: not _marked(runs.mark), f"the embedded Ray of {seen['session']} outlived its run",
               limit=60.0)


def test_a_run_after_toilrays_code_changed_restarts_the_idle_local_ray(runs: Runs, tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    shutil.copytree(REPO / "toilray", packages / "toilray", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**runs.env, "PYTHONPATH": str(packages)}
    _, before = runs.run(env=env)
    assert before["toilray"] == str(packages / "toilray" / "__init__.py") and before["edit"] == 0
    old = runs.state()
    assert old is not None
    old_daemons = _ray_daemons(runs.mark)

    with open(packages / "toilray" / "__init__.py", "a") as init:
        init.write("EDIT = 1\n")
    done, after = runs.run(env=env)
    assert "toilray's code changed since the local Ray" in done.stderr
    assert after["edit"] == 1
    new = runs.state()
    assert new is not None and new["stamp"] != old["stamp"]
    assert after["session"] == new["session_dir"] != old["session_dir"]
    assert not old_daemons & _ray_daemons(runs.mark), "the Ray that ran the old code is gone"

    again, unchanged = runs.run(env=env)
    assert "code changed" not in again.stderr and unchanged["session"] == new["session_dir"]


def test_a_run_after_toilrays_code_changed_leaves_a_busy_local_ray_alone(runs: Runs, tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    shutil.copytree(REPO / "toilray", packages / "toilray", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**runs.env, "PYTHONPATH": str(packages)}
    args, out, _ = runs.args("--block")
    busy = subprocess.Popen([sys.executable, str(runs.script), *args], env=env, cwd=runs.tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until(lambda: out.exists() or busy.poll() is not None, "the busy run's job never started")
        assert out.exists(), f"the busy run exited with status {busy.returncode}"
        with open(packages / "toilray" / "__init__.py", "a") as init:
            init.write("EDIT = 1\n")
        done, seen = runs.run(env=env)
        assert "toilray's code changed since the local Ray" in done.stderr
        assert "this run starts a Ray of its own" in done.stderr
        assert seen["edit"] == 1
        assert seen["session"] != json.loads(out.read_text())["session"]
        assert busy.poll() is None, "the busy run kept its Ray"
    finally:
        busy.kill()
        busy.wait()


def test_concurrent_runs_on_the_local_ray_keep_environments_temp_dirs_and_modules_apart(runs: Runs,
                                                                                        tmp_path: Path) -> None:
    leaders = {}
    for name, other in (("a", "b"), ("b", "a")):
        code = tmp_path / f"code-{name}"
        code.mkdir()
        shutil.copy(runs.script, code / "flow.py")
        (code / "helper.py").write_text(f"VALUE = {name!r}\n")
        temp = tmp_path / f"tmp-{name}"
        temp.mkdir()
        env = {**runs.env, "RUN_MARK": name, "TMPDIR": str(temp)}
        args, out, _ = runs.args("--waitFor", str(tmp_path / f"run-{other}.started"))
        args[args.index("--started") + 1] = str(tmp_path / f"run-{name}.started")
        leaders[name] = (subprocess.Popen([sys.executable, str(code / "flow.py"), *args], env=env,
                                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                         out, temp)
    seen = {}
    for name, (leader, out, _) in leaders.items():
        _, stderr = leader.communicate(timeout=600)
        assert leader.returncode == 0, stderr
        seen[name] = json.loads(out.read_text())
    assert len(_ray_daemons(runs.mark)) == 2, "both runs ran on one local Ray"
    assert seen["a"]["session"] == seen["b"]["session"]
    for name, (_, _, temp) in leaders.items():
        assert seen[name]["helper"] == name and seen[name]["mark"] == name
        assert seen[name]["tmp"] == str(temp)
        assert Path(str(seen[name]["job_tmp"])).is_relative_to(temp)


def test_the_code_stamp_is_the_same_however_the_interpreter_was_named(tmp_path: Path) -> None:
    # A run started as ../.venv/bin/python must not take the local Ray for one of other code.
    stamp = "from toilray.installation import code_stamp; print(code_stamp())"
    dotted = os.path.relpath(sys.executable, tmp_path)
    assert ".." in dotted
    stamps = {subprocess.run([command, "-c", stamp], cwd=cwd, capture_output=True, text=True, check=True).stdout
              for command, cwd in ((sys.executable, REPO), (dotted, tmp_path))}
    assert len(stamps) == 1, stamps


def test_which_ray_a_run_uses_follows_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule a run's start (to start the local Ray ahead) and RayConnection both follow."""
    from toilray.ray_choice import choose

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("TOILRAY_HPC", "0")
    assert choose(None, embedded=False, elastic=False).kind == "managed"
    assert choose(None, embedded=True, elastic=False).kind == "embedded"
    assert choose(None, embedded=False, elastic=True).kind == "elastic"
    given = choose("10.0.0.1:6379", embedded=True, elastic=False)
    assert (given.kind, given.address) == ("address", "10.0.0.1:6379")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")
    assert choose(None, embedded=False, elastic=False).address == "10.0.0.2:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.delenv("TOILRAY_HPC")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node1")
    inside = choose(None, embedded=False, elastic=False)
    assert inside.kind == "allocation" and inside.allocated is not None
    assert choose(None, embedded=True, elastic=False).kind == "embedded"
