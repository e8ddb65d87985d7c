"""Running one benchmark process: end-to-end wall time, peak RSS of its process tree, the
``BENCH_RESULT`` line it prints, and killing the whole tree on demand."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

RESULT_MARK = "BENCH_RESULT"
_RSS_INTERVAL_S = 0.5
_STOP_INTERVAL_S = 0.02
_ERROR_LINES = 12
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(slots=True)
class RunOutcome:
    """One process run. ``record`` is the JSON object the workflow printed, if any.

    ``tree_peak_rss_mb`` is the largest sum of RSS over the process tree, sampled every
    0.5 s; ``max_rss_mb`` the exact peak RSS of the largest single process among the process
    and the descendants it waited for.
    """

    label: str
    engine: str
    ok: bool
    e2e_s: float
    record: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    tree_peak_rss_mb: float = 0.0
    max_rss_mb: float = 0.0
    killed: bool = False

    @property
    def inner_s(self) -> float | None:
        value = self.record.get("wall_s")
        return float(value) if value is not None else None

    @property
    def leader_peak_rss_mb(self) -> float | None:
        value = self.record.get("leader_peak_rss_mb")
        return float(value) if value is not None else None


def _tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its descendants (none once it is gone)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def kill_tree(pid: int) -> None:
    """SIGKILL a process started in its own session and everything below it.

    Waits for the descendants to go, but leaves reaping ``pid`` itself to its parent."""
    procs = _tree(pid)
    _kill(procs)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    psutil.wait_procs(procs[1:], timeout=10)


def kill_session(sid: int) -> int:
    """SIGKILL what is left of a session (the Ray daemons and workers of a finished or killed
    driver, of a stopped local Ray instance) and wait for it; how many processes that was."""
    leftovers = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getsid(proc.pid) == sid:
                leftovers.append(proc)
    _kill(leftovers)
    psutil.wait_procs(leftovers, timeout=10)
    return len(leftovers)


def _tree_rss_mb(pid: int) -> float:
    total = 0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 2**20


class _Watcher(threading.Thread):
    """Samples the tree's RSS; kills the tree once ``stop_when`` says so."""

    def __init__(self, pid: int, stop_when: Callable[[], bool] | None) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_when = stop_when
        self.peak_mb = 0.0
        self.killed = False
        self._done = threading.Event()

    def run(self) -> None:
        next_sample = 0.0
        interval = _STOP_INTERVAL_S if self.stop_when is not None else _RSS_INTERVAL_S
        while not self._done.is_set():
            now = time.monotonic()
            if now >= next_sample:
                self.peak_mb = max(self.peak_mb, _tree_rss_mb(self.pid))
                next_sample = now + _RSS_INTERVAL_S
            if self.stop_when is not None and self.stop_when():
                self.killed = True
                kill_tree(self.pid)
                return
            self._done.wait(interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tail(path: Path, lines: int = _ERROR_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = _ANSI.sub("", text)
    kept = [line for line in text.splitlines() if line.strip() and set(line.strip()) != {"^"}]
    return "\n".join(kept[-lines:])


def _result_record(stdout: Path) -> dict[str, Any] | None:
    try:
        lines = stdout.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith(RESULT_MARK + " "):
            try:
                record = json.loads(line[len(RESULT_MARK) + 1 :])
            except json.JSONDecodeError:
                return None
            return record if isinstance(record, dict) else None
    return None


def run_process(
    argv: list[str],
    *,
    label: str,
    engine: str,
    env: dict[str, str],
    cwd: Path,
    timeout_s: float,
    stop_when: Callable[[], bool] | None = None,
    expect_record: bool = True,
) -> RunOutcome:
    """Run ``argv`` to completion (or until ``stop_when``, or the timeout) and measure it.

    stdout and stderr go to ``cwd/stdout.log`` and ``cwd/stderr.log``. A run is ok when it
    exited 0 and printed a result line (or needs none: ``expect_record=False``), or when it
    was stopped by ``stop_when``.
    """
    stdout, stderr = cwd / "stdout.log", cwd / "stderr.log"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )
        watcher = _Watcher(proc.pid, stop_when)
        watcher.start()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            kill_tree(proc.pid)

        timer = threading.Timer(timeout_s, expire)
        timer.start()
        # wait4, not Popen.wait: its rusage gives the peak RSS of this very process.
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # The harness itself is stopping (Ctrl-C, SIGTERM): take the run down with it.
            timer.cancel()
            kill_tree(proc.pid)
            proc.wait()
            watcher.stop()
            raise
        e2e = time.perf_counter() - started
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        watcher.stop()
    kill_session(proc.pid)
    timed_out = expired.is_set()
    outcome = RunOutcome(
        label=label,
        engine=engine,
        ok=False,
        e2e_s=e2e,
        tree_peak_rss_mb=watcher.peak_mb,
        max_rss_mb=usage.ru_maxrss / 1024,
        killed=watcher.killed and not timed_out,
    )
    if watcher.killed:
        outcome.ok = True
        return outcome
    record = _result_record(stdout)
    if timed_out:
        outcome.error = f"timed out after {timeout_s:.0f} s\n{_tail(stderr)}"
    elif proc.returncode != 0:
        outcome.error = f"exit code {proc.returncode}\n{_tail(stderr)}"
    elif record is None and expect_record:
        outcome.error = f"no {RESULT_MARK} line in the output\n{_tail(stderr)}"
    else:
        outcome.ok = True
        outcome.record = record or {}
    return outcome
