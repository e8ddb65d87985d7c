"""The long-lived local Ray instance (``toilray local-ray``) that toilray-warm runs connect to:
starting it, checking that it is still up, and stopping it (after errors and timeouts too)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 120.0
_TAIL_LINES = 12


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _session_id(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


@dataclass
class LocalRay:
    """One ``toilray local-ray`` instance kept in a private ``TOILRAY_HOME`` (``home``).

    ``env`` is the environment of the toilray-warm runs (``TOILRAY_HOME`` set, ``RAY_ADDRESS``
    unset); ``error`` says why the last start failed.
    """

    python: str
    home: Path
    env: dict[str, str]
    log: Callable[[str], None]
    error: str | None = None

    @property
    def state_path(self) -> Path:
        return self.home / "local-ray.json"

    def _command(self, verb: str) -> list[str]:
        return [self.python, "-m", "toilray", "local-ray", verb]

    def _is_instance(self, proc: psutil.Process) -> bool:
        """Whether ``proc`` is this home's instance: ``python -m toilray.local_ray N <state file>``."""
        try:
            cmdline = proc.cmdline()
            return (
                "toilray.local_ray" in cmdline
                and cmdline[-1:] == [str(self.state_path)]
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def _instance_pids(self) -> set[int]:
        """The instance's process, also one left behind by a start that timed out before it
        recorded itself in the state file."""
        return {proc.pid for proc in psutil.process_iter() if self._is_instance(proc)}

    def alive(self) -> bool:
        """Whether the instance named in the state file is running."""
        try:
            pid = int(json.loads(self.state_path.read_text())["pid"])
            return self._is_instance(psutil.Process(pid))
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            return False

    def _run(self, action: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._command(action), env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self) -> bool:
        """``toilray local-ray start``; False (with ``error`` set, and nothing left running) if
        it fails."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.error = None
        try:
            proc = self._run("start", START_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = f"`toilray local-ray start` did not finish: {exc}"
        else:
            if proc.returncode != 0:
                error = f"`toilray local-ray start` exited {proc.returncode}\n{_tail(proc.stderr or proc.stdout)}"
            elif not self.alive():
                error = f"`toilray local-ray start` reported success but no instance runs: {proc.stdout}"
            else:
                self.log(f"local Ray instance: {proc.stdout.strip()}")
                return True
        instance_log = self.home / "local-ray.log"
        if instance_log.exists():
            error += f"\nlocal-ray.log:\n{_tail(instance_log.read_text(errors='replace'))}"
        self.error = error
        self.log(f"the local Ray instance could not be started: {error.splitlines()[0]}")
        self.stop()
        return False

    def stop(self) -> None:
        """``toilray local-ray stop``, then SIGKILL whatever is left of the instance's session
        (it starts in a session of its own, which its Ray daemons and workers inherit)."""
        pids = self._instance_pids()
        try:
            proc = self._run("stop", STOP_TIMEOUT_S)
            if proc.returncode != 0:
                self.log(f"`toilray local-ray stop` exited {proc.returncode}: {_tail(proc.stderr, 3)}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log(f"`toilray local-ray stop` did not finish: {exc}")
        pids |= self._instance_pids()
        leftovers = [p for p in psutil.process_iter() if pids and _session_id(p.pid) in pids]
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=10)
        if leftovers:
            self.log(f"killed {len(leftovers)} process(es) the local Ray instance left behind")
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalRay]:
        """Started on entry (see ``error`` if that failed), stopped on exit whatever happened."""
        try:
            self.start()
            yield self
        finally:
            self.stop()
