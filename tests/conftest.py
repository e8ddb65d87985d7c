"""Shared fixtures: one real Ray instance for the whole test session.

Starting Ray costs seconds, so the session starts it once (2 CPUs, like the CI machine).
Workflows run in the test process reuse it; scripts run as subprocesses connect to it
through RAY_ADDRESS, as a user's script connects to a running cluster. A run that finds no
address uses the managed local Ray of $TOILRAY_HOME: the session gives it a directory of its
own (never the user's ~/.toilray) and stops what was started there at the end.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import ray
from objectstores import ObjectServers, start_object_servers

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session", autouse=True)
def toilray_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from toilray import forkserver, local_ray

    home = tmp_path_factory.mktemp("toilray-home")
    saved = os.environ.get("TOILRAY_HOME")
    os.environ["TOILRAY_HOME"] = str(home)
    yield home
    local_ray.stop()
    forkserver.stop()
    if saved is None:
        del os.environ["TOILRAY_HOME"]
    else:
        os.environ["TOILRAY_HOME"] = saved


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    from toilray import ray_workers

    if not ray.is_initialized():
        # Its workers start as the managed local Ray's do: as forks of a warm process.
        with ray_workers.forked_workers():
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def script_env(ray_address: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_ADDRESS"] = ray_address
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_script(script: Path | str, *args: str, env: dict[str, str], cwd: Path | str | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a workflow script with this interpreter, the way a user would."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving the files put in the returned directory."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    thread.join()


@pytest.fixture(scope="session")
def object_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServers]:
    """moto's S3 server and fake-gcs-server on 127.0.0.1, for the whole session."""
    with start_object_servers(tmp_path_factory.mktemp("object-servers")) as servers:
        yield servers


@pytest.fixture
def object_env(object_servers: ObjectServers, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this process's clients at the local servers; the variables, for workflows."""
    env = object_servers.environment()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
