"""The CWL and WDL runners' fork server: a run after the first is a fork of a warm process.

Every run is a real ``toilray-cwl-runner`` (or ``toilray-wdl-runner``) process with a state
directory of its own, so each test starts a server of its own; what shows that a run was
served is the server's log (``$TOILRAY_HOME/forkserver.log``), which names each run it forks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from toilray import forkserver
from toilray.lib.processes import pid_alive

BIN = Path(sys.executable).parent
CWL_RUNNER = str(BIN / "toilray-cwl-runner")
WDL_RUNNER = str(BIN / "toilray-wdl-runner")

GREETER = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'cat "$0"; printf "%s\\n" "$GREETING"']
inputs:
  names: {type: File, inputBinding: {position: 1}}
outputs:
  out: {type: stdout}
stdout: greeting.txt
"""

FAILING = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo the tool says no >&2; exit 3']
inputs: []
outputs: []
"""

SLEEPER = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sleep, "300"]
inputs: []
outputs: []
"""

HELLO_WDL = """\
version 1.0
workflow hello {
  input { String who }
  output { String greeting = "hello " + who }
}
"""

# Generous: under load, a server's warm-up (imports, CWL schemas) can take tens of seconds.
WAIT = 180.0


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout:g} s: {what}")
        time.sleep(0.1)


class Served:
    """Runs with a state directory of their own, and its fork server's log."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.home = tmp_path / "home"
        self.tmp_path = tmp_path
        self.env = {**env, "TOILRAY_HOME": str(self.home)}
        self.log = self.home / "forkserver.log"

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def write(self, name: str, text: str) -> Path:
        path = self.tmp_path / name
        path.write_text(text)
        return path

    def run(self, *args: str, runner: str = CWL_RUNNER, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        options = ["--no-container"] if runner == CWL_RUNNER else []
        return subprocess.run([runner, *options, *args], env=env or self.env, cwd=cwd or self.tmp_path,
                              capture_output=True, text=True, timeout=600)

    def warm(self) -> None:
        """Have a server ready: a first run starts it."""
        tool = self.write("failing.cwl", FAILING)
        self.run(str(tool))
        wait_for("the fork server serving", lambda: ": serving" in self.log_text())

    def forked(self, args: list[str]) -> list[int]:
        """The process ids of the runs the server forked for command lines ending in ``args``."""
        return [int(line.split(": run ")[1].split(":")[0]) for line in self.log_text().splitlines()
                if ": run " in line and line.endswith(" ".join(args))]


@pytest.fixture
def served(tmp_path: Path, script_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    runs = Served(tmp_path, {k: v for k, v in script_env.items() if k != forkserver.SWITCH})
    yield runs
    monkeypatch.setenv("TOILRAY_HOME", str(runs.home))
    forkserver.stop()


def test_a_run_after_the_first_is_a_fork_that_takes_its_directory_environment_and_streams(served: Served) -> None:
    served.warm()
    tool = served.write("greeter.cwl", GREETER)
    elsewhere = served.tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "names.txt").write_text("from a relative path\n")
    args = ["--preserve-environment", "GREETING", str(tool), "--names", "names.txt"]
    done = served.run(*args, env={**served.env, "GREETING": "hello from the command"}, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert len(served.forked(args)) == 1, served.log_text()
    assert '"out"' in done.stdout  # the results JSON, on the command's own stdout
    # Written in the command's working directory, with the command's environment.
    assert (elsewhere / "greeting.txt").read_text() == "from a relative path\nhello from the command\n"


def test_a_forked_run_fails_as_a_run_in_its_own_process_does(served: Served) -> None:
    served.warm()
    tool = served.write("failing.cwl", FAILING)
    forked = served.run(str(tool))
    alone = served.run(str(tool), env={**served.env, forkserver.SWITCH: "0"})
    assert served.forked([str(tool)]), served.log_text()
    assert forked.returncode == alone.returncode == 1
    assert "the tool says no" in forked.stderr and "the tool says no" in alone.stderr
    # A run that ends at once: the server's two answers (forked, exited) arrive together.
    answered = served.run("--version")
    assert answered.returncode == 0 and answered.stdout.startswith("toilray-cwl-runner "), answered
    assert served.forked(["--version"]), served.log_text()
    missing = served.run("no-such.cwl")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == "toilray-cwl-runner: error: workflow file not found: no-such.cwl"
    assert served.forked(["no-such.cwl"]), served.log_text()


def test_a_wdl_run_is_served_too(served: Served) -> None:
    served.warm()
    document = served.write("hello.wdl", HELLO_WDL)
    inputs = served.write("hello.json", '{"hello.who": "fork"}')
    done = served.run(str(document), str(inputs), runner=WDL_RUNNER)
    assert done.returncode == 0, done.stderr
    assert '"hello.greeting": "hello fork"' in done.stdout
    assert served.forked([str(document), str(inputs)]), served.log_text()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_stopped_command_stops_its_forked_run(served: Served, how: signal.Signals) -> None:
    served.warm()
    tool = served.write("sleeper.cwl", SLEEPER)
    command = subprocess.Popen([CWL_RUNNER, "--no-container", str(tool)], env=served.env, cwd=served.tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the run forked", lambda: bool(served.forked([str(tool)])))
        (child,) = served.forked([str(tool)])
        command.send_signal(how)
        _, stderr = command.communicate(timeout=WAIT)
    finally:
        command.kill()
    assert command.returncode != 0
    if how == signal.SIGINT:
        assert "Traceback" not in stderr
    # The run (the server's child) ends with its command; the server then reaps it.
    wait_for(f"run {child} ended", lambda: not pid_alive(child))


def test_a_server_serves_its_starters_front_end_first_and_warms_the_others_later(served: Served) -> None:
    served.warm()
    wait_for("every front end warm", lambda: all(f": preloading {front_end}\n" in served.log_text()
                                                 for front_end in ("toilray.wdl.main", "toilray.ray_workers")))
    log = served.log_text()
    assert ": warming up toilray.cwl.main\n" in log, log
    assert log.index(": serving") < log.index(": preloading"), log
    assert ": preloading toilray.cwl.main" not in log, log
    # A front end warmed later is served as the first one is.
    test_a_wdl_run_is_served_too(served)


def test_commands_arriving_together_start_one_server(served: Served) -> None:
    tool = served.write("failing.cwl", FAILING)
    commands = [subprocess.Popen([CWL_RUNNER, "--no-container", str(tool)], env=served.env, cwd=served.tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(3)]
    assert [command.wait(timeout=600) for command in commands] == [1, 1, 1]
    wait_for("the fork server serving", lambda: ": serving" in served.log_text())
    assert served.log_text().count(": warming up") == 1, served.log_text()


def test_switched_off_a_run_starts_no_server(served: Served) -> None:
    tool = served.write("failing.cwl", FAILING)
    done = served.run(str(tool), env={**served.env, forkserver.SWITCH: "0"})
    assert done.returncode == 1
    assert not served.log.exists()


def test_local_ray_stop_stops_the_fork_server(served: Served) -> None:
    served.warm()
    stopped = subprocess.run([sys.executable, "-m", "toilray", "local-ray", "stop"], env=served.env,
                             capture_output=True, text=True, timeout=120)
    assert "Stopped the fork servers" in stopped.stdout, stopped.stdout + stopped.stderr
    wait_for("the server stopped", lambda: ": stopped" in served.log_text())
    # Its record (its process id) is gone; the lock file beside it stays, unlocked, for the next server.
    assert [name for name in os.listdir(served.home / "forkservers") if not name.endswith(".lock")] == []


def test_forks_of_a_warm_server_draw_distinct_ray_ids() -> None:
    # In a process of its own: this one's Ray is running (its ID generator seeded long ago).
    warm = ("from toilray import forkserver\n"
            "for front_end in forkserver.FRONT_ENDS:\n"
            "    __import__(front_end, fromlist=['preload']).preload()\n"
            "print(forkserver.ray_ids_differ_after_fork())\n")
    done = subprocess.run([sys.executable, "-c", warm], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "True", done.stdout + done.stderr


def test_a_server_serves_only_commands_in_its_conditions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOILRAY_HOME", str(tmp_path))
    name = forkserver.socket_name()
    # Read only by the run itself: the same server will do.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("PATH", "/nowhere")
    assert forkserver.socket_name() == name
    # Read when modules are imported, or by the interpreter at its start: another server.
    for variable, value in (("TMPDIR", str(tmp_path)), ("LANG", "C"), ("RAY_DEDUP_LOGS", "0"),
                            ("TOILRAY_HOME", str(tmp_path / "other"))):
        with monkeypatch.context() as changed:
            changed.setenv(variable, value)
            assert forkserver.socket_name() != name, variable
