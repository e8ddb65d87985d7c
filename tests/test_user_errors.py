"""A new user's mistakes and interruptions: no hang, no dead-end store, one clear line.

Each test drives toilray as a user does, from a shell: scripts run with ``python`` and with
``toilray run``, against a real Ray (the session's, or an embedded one where that is the point).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_script

from toilray.common import Toil
from toilray.job import Job

WORKFLOWS = Path(__file__).parent / "workflows"

HELLO = '''
import os
import threading

from toilray.common import Toil
from toilray.job import Job


def hello(message, memory="50M", cores=0.5, disk="10M"):
    return f"Hello, {message}"


if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    # A job argument that cannot be pickled, while the file "poison" is beside the script.
    argument = threading.Lock() if os.path.exists(os.path.join(os.path.dirname(__file__), "poison")) else "you"
    with Toil(options) as toil:
        print(toil.restart() if options.restart else toil.start(Job.wrapFn(hello, argument)))
'''


def _toilray(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toilray", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    script = tmp_path / "hello.py"
    script.write_text(HELLO)
    return script


@pytest.fixture
def no_ray_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no Ray to find, whose runs start a Ray of their own: no RAY_ADDRESS,
    no shared local Ray (TOILRAY_EMBEDDED_RAY) and, as in a user's shell, no RAY_AUTH_MODE: this
    process's ray.init set it."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["TOILRAY_HOME"] = str(tmp_path / "toilray-home")
    env["TOILRAY_EMBEDDED_RAY"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_ray_address_fails_at_once_with_one_line_and_no_store(
        tmp_path: Path, hello: Path, no_ray_env: dict[str, str], http_root: tuple[str, Path]) -> None:
    not_ray = http_root[0].removeprefix("http://")
    for address, why in ((f"127.0.0.1:{_closed_port()}", "connection refused"),
                         (not_ray, "something listens there but it is not a Ray head")):
        store = tmp_path / "store"
        # Bounded by the subprocess timeout: today this hangs for minutes.
        done = run_script(hello, f"file:{store}", "--rayAddress", address, "--rayConnectTimeout", "5",
                          env=no_ray_env, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"toilray: error: RayConnectionError: Cannot connect to Ray at {address}: {why}")
        assert "ray status --address" in lines[0]
        assert not store.exists()


def test_a_failed_start_then_the_same_command_again_succeeds(tmp_path: Path, hello: Path,
                                                             script_env: dict[str, str]) -> None:
    store = f"file:{tmp_path / 'store'}"
    (tmp_path / "poison").touch()
    failed = run_script(hello, store, env=script_env)
    assert failed.returncode != 0 and "_thread.lock" in failed.stderr
    (tmp_path / "poison").unlink()
    again = run_script(hello, store, env=script_env)
    assert again.returncode == 0, again.stderr
    assert "Hello, you" in again.stdout


def test_a_store_whose_workflow_never_started_is_replaced_by_a_new_run(tmp_path: Path, hello: Path,
                                                                       script_env: dict[str, str]) -> None:
    store = tmp_path / "store"
    # A run that opened the store and ended before starting the workflow (as a kill -9 would).
    options = Job.Runner.getDefaultOptions(f"file:{store}")
    options.clean = "never"
    with Toil(options):
        pass
    assert store.is_dir()
    done = run_script(hello, f"file:{store}", env=script_env)
    assert done.returncode == 0, done.stderr
    assert "Hello, you" in done.stdout


@pytest.mark.parametrize("locator", ["s4://bucket", "fil:mystore"])
def test_a_bad_locator_gives_the_same_line_and_status_through_python_and_toilray_run(
        tmp_path: Path, hello: Path, script_env: dict[str, str], locator: str) -> None:
    by_python = run_script(hello, locator, env=script_env, cwd=tmp_path)
    by_cli = _toilray("run", str(hello), locator, env=script_env, cwd=tmp_path)
    for done in (by_python, by_cli):
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"toilray: error: NoSuchJobStoreException: The job store '{locator}' does not exist: unknown job store "
            f"type '{locator.split(':')[0]}:' (use file:PATH, a plain path, s3://BUCKET/PREFIX or "
            "gs://BUCKET/PREFIX; a path with ':' in its first part needs './' in front)."
        ]
    assert not (tmp_path / "fil:mystore").exists()
    traced = run_script(hello, locator, env=dict(script_env, TOILRAY_TRACEBACK="1"), cwd=tmp_path)
    assert traced.returncode == 2 and "Traceback" in traced.stderr


def test_a_path_with_a_colon_after_a_slash_is_still_a_path(tmp_path: Path, hello: Path,
                                                           script_env: dict[str, str]) -> None:
    (tmp_path / "runs").mkdir()
    done = run_script(hello, "runs/a:b", env=script_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Hello, you" in done.stdout


def _status(store: Path, env: dict[str, str]) -> dict[str, object]:
    done = _toilray("status", str(store), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ctrl_c_stops_with_one_line_and_status_130_and_restart_finishes(tmp_path: Path,
                                                                       script_env: dict[str, str]) -> None:
    store, counts, gate = tmp_path / "store", tmp_path / "counts", tmp_path / "gate"
    counts.mkdir()
    # All but 10 children wait for the gate, which opens only for the restart: the interrupt
    # lands in a run that is certainly unfinished.
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "fan_out.py"), f"file:{store}", "--countDir",
                               str(counts), "--n", "100", "--seconds", "0.3", "--gate", str(gate),
                               "--ungated", "10"], env=script_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        info = _status(store, script_env) if store.exists() else {}
        while not (info.get("state") == "running" and info.get("finished", 0) >= 5):
            assert leader.poll() is None and time.monotonic() < deadline
            info = _status(store, script_env) if (store / "status.json").exists() else {}
        # The session's Ray has 2 cores and each child asks for 0.5: at most 4 run at once;
        # the others are submitted to Ray and wait there.
        assert isinstance(info["running"], int) and isinstance(info["queued"], int)
        assert 1 <= info["running"] <= 4 and info["queued"] >= 0
        leader.send_signal(signal.SIGINT)
        _, err = leader.communicate(timeout=120)
    finally:
        leader.kill()
    assert leader.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"toilray: interrupted: The workflow in job store 'file:{store}' was interrupted; resume it by running "
        "the same command with --restart")
    assert _status(store, script_env)["state"] == "interrupted"
    gate.touch()
    resumed = run_script(WORKFLOWS / "fan_out.py", f"file:{store}", "--countDir", str(counts), "--restart",
                         env=script_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "RESULT 4950" in resumed.stdout


def test_kill_is_not_followed_by_fix_the_problem_advice(tmp_path: Path, script_env: dict[str, str]) -> None:
    store, counts = tmp_path / "store", tmp_path / "counts"
    counts.mkdir()
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "fan_out.py"), f"file:{store}", "--countDir",
                               str(counts), "--n", "100", "--seconds", "0.3", "--kill_polling_interval", "0.5",
                               "--gate", str(tmp_path / "never"), "--ungated", "3"],
                              env=script_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(os.listdir(counts)) < 3:
            assert leader.poll() is None and time.monotonic() < deadline
        assert _toilray("kill", str(store), env=script_env).returncode == 0
        _, err = leader.communicate(timeout=120)
    finally:
        leader.kill()
    assert leader.returncode == 1
    assert "fix the problem" not in err
    assert err.strip().splitlines()[-1].startswith("toilray: error: WorkflowKilledException: ")


def test_a_cold_run_at_log_level_error_prints_no_ray_banner(tmp_path: Path, hello: Path,
                                                            no_ray_env: dict[str, str]) -> None:
    done = run_script(hello, f"file:{tmp_path / 'store'}", "--logLevel", "ERROR", env=no_ray_env)
    assert done.returncode == 0, done.stderr
    assert "Hello, you" in done.stdout
    assert "Token authentication" not in done.stderr


def test_the_cwl_runner_names_toilrays_version() -> None:
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "toilray.cwl.main", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"toilray-cwl-runner {version('toilray')} (cwltool {version('cwltool')})"


BLOCKED = """
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from toilray.common import Toil
from toilray.job import Job


def blocked(marker):
    import ray

    # Tell the test which Ray session runs this job, then wait to be killed with the leader.
    Path(marker).write_text(ray._private.worker.global_worker.node.get_session_dir_path())
    threading.Event().wait()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--marker")
    options = parser.parse_args()
    with Toil(options) as toil:
        toil.start(Job.wrapFn(blocked, options.marker, cores=0.5, memory="50M", disk="10M"))
"""


def _until(condition: Callable[[], object], what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_cold_run_killed_with_sigkill_leaves_no_ray_process(tmp_path: Path, no_ray_env: dict[str, str]) -> None:
    from toilray.lib.ray_reaper import session_processes

    script, marker = tmp_path / "blocked.py", tmp_path / "session"
    script.write_text(BLOCKED)
    leader = subprocess.Popen([sys.executable, str(script), f"file:{tmp_path / 'store'}", "--marker", str(marker)],
                              env=no_ray_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until(lambda: marker.exists() and marker.read_text(), "the job never started")
        session = marker.read_text()
        assert any("DashboardAgent" in p.name() for p in session_processes(session))
    finally:
        leader.kill()
        leader.wait()
    # Without the reaper Ray's agents outlive the leader by a minute or more.
    _until(lambda: not session_processes(session), f"processes of {session} outlived the leader", limit=30.0)
