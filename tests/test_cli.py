"""The toilray command: run, status, kill and clean, as a user drives them from a shell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import run_script

from toilray.jobStores.jobStore import JobStore

WORKFLOWS = Path(__file__).parent / "workflows"


def toilray(*args: str, env: dict[str, str], cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toilray", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_run_a_toil_style_script_and_a_root_only_script(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    done = toilray("run", str(WORKFLOWS / "fan_out.py"), f"file:{tmp_path / 's'}", "--countDir", str(counts),
                   "--n", "10", env=script_env)
    assert done.returncode == 0, done.stderr
    assert "RESULT 45" in done.stdout

    (tmp_path / "rootonly.py").write_text(
        "from toilray.job import Job\n\n\ndef hello(name):\n    return f'hello {name}'\n\n\n"
        "root = Job.wrapFn(hello, 'from root')\n"
    )
    done = toilray("run", "rootonly.py", env=script_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello from root"
    assert "toilray: job store: file:" in done.stderr  # the default store's location is printed


def test_default_store_holds_the_workflow_while_it_is_unfinished(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    failed = toilray("run", str(WORKFLOWS / "flaky.py"), "--countDir", str(counts), env=script_env, cwd=tmp_path)
    assert failed.returncode == 1
    store = failed.stderr.split("toilray: job store: ", 1)[1].split()[0]
    assert os.path.isdir(store.removeprefix("file:"))
    status = toilray("status", store, "--json", env=script_env)
    assert json.loads(status.stdout)["state"] == "failed"


def test_user_errors_are_one_line_with_exit_code_2(tmp_path: Path, script_env: dict[str, str]) -> None:
    (tmp_path / "broken.py").write_text("def f(:\n    pass\n")
    cases = [
        ("run", str(tmp_path / "missing.py"), "file:x"),
        ("run", str(tmp_path / "broken.py"), "file:x"),
        ("status", str(tmp_path / "no-store")),
        ("kill", str(tmp_path / "no-store")),
        ("status", "s3x://typo/store"),
    ]
    for args in cases:
        done = toilray(*args, env=script_env)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("toilray: error:"), (args, done.stderr)
    broken = toilray("run", str(tmp_path / "broken.py"), "file:x", env=script_env)
    assert "broken.py:1: syntax error" in broken.stderr


def test_status_of_completed_failed_and_stopped_workflows(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    store = tmp_path / "done"
    run_script(WORKFLOWS / "fan_out.py", f"file:{store}", "--countDir", str(counts), "--n", "20",
               "--clean", "never", env=script_env)
    info = json.loads(toilray("status", str(store), "--json", env=script_env).stdout)
    assert info["state"] == "completed" and info["finished"] == 22 and info["unfinished"] == 0
    assert toilray("status", str(store), "--failIfNotComplete", env=script_env).returncode == 0

    failing = tmp_path / "failing"
    run_script(WORKFLOWS / "flaky.py", f"file:{failing}", "--countDir", str(counts), env=script_env)
    shown = toilray("status", str(failing), "--failed", env=script_env)
    assert "FAILED" in shown.stdout and "'flaky'" in shown.stdout
    assert "RuntimeError: boom from flaky" in shown.stdout
    assert toilray("status", str(failing), "--failIfNotComplete", env=script_env).returncode == 1

    stopped = tmp_path / "stopped"
    slow_counts = tmp_path / "slow"
    slow_counts.mkdir()
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "fan_out.py"), f"file:{stopped}", "--countDir",
                               str(slow_counts), "--n", "200", "--seconds", "0.2"], env=script_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(os.listdir(slow_counts)) < 10:
        assert leader.poll() is None
    while (json.loads(toilray("status", str(stopped), "--json", env=script_env).stdout)["state"]
           != "running"):
        assert leader.poll() is None
    leader.send_signal(signal.SIGKILL)
    leader.wait()
    info = json.loads(toilray("status", str(stopped), "--json", env=script_env).stdout)
    assert info["state"] == "stopped"
    assert info["finished"] >= 1 and info["unfinished"] > 0 and info["running"] == 0
    assert info["ready"] + info["waiting"] + len(info["failed"]) == info["unfinished"]


def test_kill_stops_a_running_workflow_and_restart_finishes_it(tmp_path: Path, script_env: dict[str, str]) -> None:
    store, counts = tmp_path / "store", tmp_path / "counts"
    counts.mkdir()
    args = [f"file:{store}", "--countDir", str(counts), "--n", "100", "--seconds", "0.2",
            "--kill_polling_interval", "0.5"]
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "fan_out.py"), *args], env=script_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while len(os.listdir(counts)) < 5:
        assert leader.poll() is None, leader.communicate()
    killed = toilray("kill", f"file:{store}", env=script_env)
    assert killed.returncode == 0, killed.stderr
    _, err = leader.communicate(timeout=120)
    assert leader.returncode == 1
    assert "was killed" in err
    assert json.loads(toilray("status", str(store), "--json", env=script_env).stdout)["state"] == "killed"

    again = run_script(WORKFLOWS / "fan_out.py", *args, "--restart", env=script_env)
    assert again.returncode == 0, again.stderr
    assert f"RESULT {sum(range(100))}" in again.stdout


def test_clean_deletes_the_store_and_is_idempotent(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    store = tmp_path / "store"
    run_script(WORKFLOWS / "flaky.py", f"file:{store}", "--countDir", str(counts), env=script_env)
    assert store.is_dir()
    for _ in range(2):
        done = toilray("clean", f"file:{store}", env=script_env)
        assert done.returncode == 0, done.stderr
        assert not store.exists()


def _commit_count(store: Path) -> int:
    return sum(1 for _ in JobStore(f"file:{store}").committed_ids())


def test_debug_job_reproduces_the_failure_in_the_foreground(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    store = tmp_path / "store"
    run_script(WORKFLOWS / "flaky.py", f"file:{store}", "--countDir", str(counts), env=script_env)
    before = _commit_count(store)
    again = toilray("debug-job", f"file:{store}", env=script_env)
    assert again.returncode == 1
    assert "flaky is about to fail" in again.stdout  # the job's prints reach this terminal
    assert "Traceback" in again.stderr and "RuntimeError: boom from flaky" in again.stderr
    assert 'raise RuntimeError("boom from flaky")' in again.stderr  # the user's own source line
    assert _commit_count(store) == before  # nothing was written back
    named = toilray("debug-job", f"file:{store}", "root", env=script_env)
    assert named.returncode == 0, named.stderr
    assert "Running job 'root'" in named.stderr and "finished" in named.stderr
    ambiguous = toilray("debug-job", f"file:{store}", "work", env=script_env)
    assert ambiguous.returncode == 2 and "ambiguous (10 jobs" in ambiguous.stderr


def _write_files(job: object) -> None:
    store = job.fileStore  # type: ignore[attr-defined]
    for name, text in (("report.txt", "text"), ("data.bin", "binary")):
        path = os.path.join(store.getLocalTempDir(), name)
        Path(path).write_text(text)
        store.writeGlobalFile(path)


def test_debug_file_lists_and_fetches_by_name(tmp_path: Path, script_env: dict[str, str]) -> None:
    from toilray.common import Toil
    from toilray.job import Job

    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.clean = "never"
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(_write_files, cores=0.1))
    listed = toilray("debug-file", f"file:{tmp_path / 'store'}", "--listFilesInJobStore", env=script_env,
                     cwd=tmp_path)
    assert listed.returncode == 0 and "report.txt" in listed.stdout and "data.bin" in listed.stdout
    assert "report.txt" in (tmp_path / "jobstore_files.txt").read_text()
    fetched = toilray("debug-file", f"file:{tmp_path / 'store'}", "--fetch", "*.txt", "--localFilePath",
                      str(tmp_path / "out"), env=script_env)
    assert fetched.returncode == 0, fetched.stderr
    assert os.listdir(tmp_path / "out") == ["report.txt"]
    assert (tmp_path / "out" / "report.txt").read_text() == "text"


def test_local_ray_instance_is_reused_by_workflows_and_stops_cleanly(tmp_path: Path,
                                                                      script_env: dict[str, str]) -> None:
    env = {k: v for k, v in script_env.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["TOILRAY_HOME"] = str(tmp_path / "home")
    started = toilray("local-ray", "start", "--num-cpus", "1", env=env)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    try:
        counts = tmp_path / "counts"
        counts.mkdir()
        done = run_script(WORKFLOWS / "fan_out.py", f"file:{tmp_path / 'store'}", "--countDir", str(counts),
                          "--n", "5", env=env)
        assert done.returncode == 0, done.stderr
        assert "RESULT 10" in done.stdout
        assert "Using the local Ray instance" in done.stderr
        assert "running at" in toilray("local-ray", "status", env=env).stdout
    finally:
        stopped = toilray("local-ray", "stop", env=env)
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert not Path(f"/proc/{pid}").exists()
    assert toilray("local-ray", "status", env=env).stdout.strip() == "not running"


def test_progress_line_on_a_terminal_only(tmp_path: Path, script_env: dict[str, str]) -> None:
    import pty

    counts = tmp_path / "counts"
    counts.mkdir()
    args = [sys.executable, str(WORKFLOWS / "fan_out.py"), "--countDir", str(counts), "--n", "30"]
    output = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 1024)
        output.extend(data)
        return data

    env_backup = dict(os.environ)
    os.environ.clear()
    os.environ.update(script_env)
    try:
        status = pty.spawn([*args[:2], f"file:{tmp_path / 'tty'}", *args[2:]], read)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    assert os.waitstatus_to_exitcode(status) == 0
    # tqdm's line: all 32 jobs done, the rate, and the counts by state.
    assert b"toilray: 100%" in output and b"32/32" in output and b"job/s" in output
    assert b"running=0" in output and b"failed=0" in output

    piped = run_script(WORKFLOWS / "fan_out.py", f"file:{tmp_path / 'piped'}", "--countDir", str(counts),
                       "--n", "30", env=script_env)
    assert piped.returncode == 0 and "job/s" not in piped.stderr


_NAMESPACE_SCRIPT = """
set -e
ip link set lo up
export PATH={bin}:$PATH RAY_AUTH_MODE=token
ray start --head --node-ip-address=127.0.0.1 --port=6390 --dashboard-host=127.0.0.1 --dashboard-port=8265 \\
    --num-cpus=2 --disable-usage-stats > {log} 2>&1
set +e
for script in {scripts}; do
    toilray submit --address http://127.0.0.1:8265 --wait "$script" file:store --logWarning
    echo "SUBMIT-EXIT $?"
done
ray stop > /dev/null 2>&1
"""


def test_submit_to_a_ray_head_in_its_own_namespaces(tmp_path: Path) -> None:
    failing = tmp_path / "failing_flow.py"
    failing.write_text(
        "from toilray.common import Toil\nfrom toilray.job import Job\n\n\n"
        "def boom():\n    raise ValueError('submitted job fails')\n\n\n"
        "if __name__ == '__main__':\n    options = Job.Runner.getDefaultArgumentParser().parse_args()\n"
        "    options.retryCount = 0\n    with Toil(options) as toil:\n        toil.start(Job.wrapFn(boom))\n"
    )
    good = WORKFLOWS / "sibling" / "sibling_flow.py"
    script = _NAMESPACE_SCRIPT.format(bin=Path(sys.executable).parent, log=tmp_path / "head.log",
                                      scripts=f"{good} {failing}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # A private PID and network namespace: this Ray head, and 'ray stop', touch nothing else.
    done = subprocess.run(["unshare", "--fork", "--pid", "--mount-proc", "--net", "bash", "-c", script],
                          env=env, capture_output=True, text=True, timeout=400)
    assert "RESULT 42" in done.stdout, done.stdout + done.stderr
    exits = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("SUBMIT-EXIT")]
    assert exits == ["0", "1"], done.stdout + done.stderr
    assert "ended: SUCCEEDED" in done.stderr and "ended: FAILED" in done.stderr
    assert "submitted job fails" in done.stdout


def test_conflicting_options_are_one_line_errors(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    for conflict in (["--writeLogs", "a", "--writeLogsGzip", "b"], ["--maxCores", "1", "--defaultCores", "2"]):
        done = toilray("run", str(WORKFLOWS / "fan_out.py"), f"file:{tmp_path / 'store'}", "--countDir",
                       str(counts), *conflict, env=script_env)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and ("conflict" in lines[0] or "less than --defaultCores" in lines[0])
        assert not (tmp_path / "store").exists()


def _run_script_text(tmp_path: Path, env: dict[str, str], source: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a workflow script in ``tmp_path`` with a job store there."""
    (tmp_path / "flow.py").write_text(source)
    return subprocess.run([sys.executable, "flow.py", f"file:{tmp_path / 's'}"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_a_run_leaves_unused_libraries_unloaded(tmp_path: Path, script_env: dict[str, str]) -> None:
    """The leader imports neither pyarrow (for --stats only) nor what Ray's serialization would
    load for objects the leader never sends (pydantic, starlette, pyarrow with numpy)."""
    done = _run_script_text(tmp_path, script_env,
        "import sys\nfrom toilray.common import Toil\nfrom toilray.job import Job\n\n\n"
        "def hello(job, name):\n    return f'hello {name}'\n\n\n"
        "if __name__ == '__main__':\n"
        "    options = Job.Runner.getDefaultArgumentParser().parse_args(sys.argv[1:])\n"
        "    with Toil(options) as toil:\n"
        "        print(toil.start(Job.wrapJobFn(hello, 'lean')))\n"
        "    print(sorted(m for m in ('pyarrow', 'numpy', 'pydantic', 'starlette') if m in sys.modules))\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hello lean", "[]"]


def test_what_a_script_does_at_exit_still_happens(tmp_path: Path, script_env: dict[str, str]) -> None:
    """After a run the leader leaves Ray quickly: the script's own exit handlers still run, its
    unclosed files are still written, its exit status is kept."""
    done = _run_script_text(tmp_path, script_env,
        "import atexit, sys\nfrom toilray.common import Toil\nfrom toilray.job import Job\n\n"
        "atexit.register(lambda: open('handler.txt', 'w').write('handler ran'))\n\n\n"
        "def hello(job):\n    return 'hello'\n\n\n"
        "if __name__ == '__main__':\n"
        "    options = Job.Runner.getDefaultArgumentParser().parse_args(sys.argv[1:])\n"
        "    with Toil(options) as toil:\n"
        "        value = toil.start(Job.wrapJobFn(hello))\n"
        "    unclosed = open('unclosed.txt', 'w')\n"
        "    unclosed.write(value)\n"
        "    sys.exit(3)\n")
    assert done.returncode == 3, done.stderr
    assert (tmp_path / "handler.txt").read_text() == "handler ran"
    assert (tmp_path / "unclosed.txt").read_text() == "hello"
