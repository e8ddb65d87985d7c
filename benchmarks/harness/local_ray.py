"""The local Ray instance (``toilray local-ray``) that toilray-warm runs connect to: started as a
user starts it, found and stopped by toilray's own ``toilray.local_ray``."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from harness.process import kill_session
from toilray import local_ray


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class LocalRay:
    """One ``toilray local-ray`` instance kept in a private ``TOILRAY_HOME`` (``home``).

    ``env`` is the environment of the toilray-warm runs (``TOILRAY_HOME`` set, ``RAY_ADDRESS``
    unset), which the instance starts with; ``error`` says why the last start failed.
    """

    python: str
    home: Path
    env: dict[str, str]
    log: Callable[[str], None]
    error: str | None = None

    @contextlib.contextmanager
    def _in_home(self) -> Iterator[None]:
        """``toilray.local_ray`` looks in ``$TOILRAY_HOME``: this instance's home, meanwhile."""
        with mock.patch.dict(os.environ, TOILRAY_HOME=str(self.home)):
            yield

    def alive(self) -> bool:
        with self._in_home():
            return local_ray.running() is not None

    def start(self) -> bool:
        """``toilray local-ray start`` in a process and a session of its own (the instance must not
        be the harness's child, nor get its Ctrl-C); False, with ``error`` set and nothing left
        running, if it fails."""
        command = [self.python, "-m", "toilray", "local-ray", "start"]
        proc = subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            proc.wait()  # bounded by toilray's own start timeout; then stop() finds what it started
            raise
        if proc.returncode == 0 and self.alive():
            self.error = None
            self.log(f"local Ray instance: {stdout.strip()}")
            return True
        self.error = f"`toilray local-ray start` exited {proc.returncode}\n{_tail(stderr or stdout)}"
        instance_log = self.home / "local-ray.log"
        if instance_log.exists():
            self.error += f"\nlocal-ray.log:\n{_tail(instance_log.read_text(errors='replace'))}"
        self.log(f"the local Ray instance could not be started: {self.error.splitlines()[0]}")
        self.stop()
        return False

    def stop(self) -> None:
        """``toilray.local_ray.stop()``, then SIGKILL whatever is left of the instance's session
        (it starts in a session of its own, which its Ray daemons and workers inherit)."""
        with self._in_home():
            instance = local_ray.running()
            local_ray.stop()
        if instance is not None and (killed := kill_session(instance.pid)):
            self.log(f"killed {killed} process(es) the local Ray instance left behind")

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalRay]:
        """Started on entry (see ``error`` if that failed), stopped on exit whatever happened."""
        try:
            self.start()
            yield self
        finally:
            self.stop()
