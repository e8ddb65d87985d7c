"""A real ``toilray server`` for the WES tests: a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

BASE = "/ga4gh/wes/v1"
TOKEN = "test-token-3f9c1d"
FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class WesServer:
    work_dir: Path
    env: dict[str, str]
    args: tuple[str, ...]
    port: int = 0
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + BASE

    def start(self) -> None:
        self.port = free_port()
        log = open(self.work_dir.parent / f"server-{self.port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "toilray", "server", "--port", str(self.port), "--work_dir", str(self.work_dir),
             *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True)

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log()
            try:
                return requests.get(f"{self.api}/service-info", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(answers, 60, "the server to answer")

    def log(self) -> str:
        return (self.work_dir.parent / f"server-{self.port}.log").read_text()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=60)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def get(self, path: str) -> Any:
        response = requests.get(self.api + path, headers=self.headers(), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, fields: dict[str, str], files: list[tuple[str, tuple[str, bytes]]]) -> str:
        response = requests.post(f"{self.api}/runs", data=fields, files=files, headers=self.headers(), timeout=60)
        assert response.status_code == 200, response.text
        return str(response.json()["run_id"])

    def wait_state(self, run_id: str, states: set[str], timeout: float = 240) -> str:
        return str(wait_for(lambda: (s := self.get(f"/runs/{run_id}/status")["state"]) in states and s,
                            timeout, f"run {run_id} to reach {sorted(states)}"))

    def leaders(self) -> dict[str, int]:
        """Run ID -> pid of each run's leader that is still the process the server started."""
        database = sqlite3.connect(self.work_dir / "wes-state.sqlite")
        try:
            rows = database.execute("SELECT run_id, pid, pid_started FROM runs WHERE pid IS NOT NULL").fetchall()
        finally:
            database.close()
        alive = {}
        for run_id, pid, started in rows:
            try:
                process = psutil.Process(pid)
                if abs(process.create_time() - started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE:
                    alive[run_id] = pid
            except psutil.Error:
                continue
        return alive

    def stop(self) -> None:
        """Stop the server and every leader it started (they outlive it by design)."""
        if self.process is not None and self.process.poll() is None:
            self.kill(signal.SIGTERM)
        if (self.work_dir / "wes-state.sqlite").exists():
            for pid in self.leaders().values():
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    continue
