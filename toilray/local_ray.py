"""A long-lived local Ray instance that workflows on this machine reuse.

Starting Ray costs seconds; connecting to a running instance costs well under one. After
``toilray local-ray start``, every workflow started on this machine without ``--rayAddress``
(or ``RAY_ADDRESS``) runs on that instance instead of starting its own, until
``toilray local-ray stop``. The instance is a small Python process in its own session that
started Ray with ``ray.init`` (so clients connect with Ray's default settings, token
authentication included) and shuts it down when terminated; stopping it ends that Ray and
nothing else (unlike ``ray stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from toilray.exceptions import ToilrayError
from toilray.lib.processes import pid_alive

_START_TIMEOUT = 120.0


class LocalRayError(ToilrayError):
    """The local Ray instance could not be started or reached."""


@dataclass(frozen=True, slots=True)
class LocalRay:
    address: str
    pid: int


def _home() -> str:
    return os.environ.get("TOILRAY_HOME") or os.path.join(os.path.expanduser("~"), ".toilray")


def _state_path() -> str:
    return os.path.join(_home(), "local-ray.json")


def running() -> LocalRay | None:
    """The local instance if one is running (a stale record is removed)."""
    try:
        with open(_state_path()) as handle:
            state = json.load(handle)
        local = LocalRay(state["address"], int(state["pid"]))
    except (FileNotFoundError, ValueError, KeyError):
        return None
    if pid_alive(local.pid):
        return local
    os.unlink(_state_path())
    return None


def prepare_client_environment() -> None:
    """Let this process connect to the local instance: Ray starts clusters with token
    authentication but reads whether a client should use it from the environment, once."""
    if "RAY_AUTH_MODE" not in os.environ and os.path.exists(_state_path()):
        os.environ["RAY_AUTH_MODE"] = "token"


def start(num_cpus: int | None = None) -> LocalRay:
    """Start the local instance (or return the one already running)."""
    existing = running()
    if existing is not None:
        return existing
    os.makedirs(_home(), exist_ok=True)
    log_path = os.path.join(_home(), "local-ray.log")
    command = [sys.executable, "-m", "toilray.local_ray", str(num_cpus or os.cpu_count() or 1), _state_path()]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        local = running()
        if local is not None and local.pid == process.pid:
            return local
        if process.poll() is not None:
            raise LocalRayError(f"The local Ray instance exited with status {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            process.terminate()
            raise LocalRayError(f"Ray did not start within {_START_TIMEOUT:g} s; see {log_path}")
        time.sleep(0.2)


def _serve(num_cpus: int, state_path: str) -> None:
    """The instance's own process: start Ray, record where it is, shut it down on SIGTERM."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)

    def shut_down(_signum: int, _frame: object) -> None:
        ray.shutdown()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shut_down)
    tmp = f"{state_path}.{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump({"address": ray.get_runtime_context().gcs_address, "pid": os.getpid()}, handle)
    os.replace(tmp, state_path)
    while True:
        signal.pause()


def stop() -> bool:
    """Stop the local instance; False if none was running."""
    local = running()
    if local is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(local.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while pid_alive(local.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(local.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(local.pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_state_path())
    return True


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
