"""The server's durable state: one SQLite file holding every run, its request and its state.

Every change is its own committed transaction (in WAL mode), so a server killed at any moment
finds on restart exactly what it had recorded: no run is lost and none is started twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

# WES states (1.1). A run is "active" in the first four; the rest are final.
QUEUED = "QUEUED"
INITIALIZING = "INITIALIZING"
RUNNING = "RUNNING"
CANCELING = "CANCELING"
COMPLETE = "COMPLETE"
EXECUTOR_ERROR = "EXECUTOR_ERROR"
SYSTEM_ERROR = "SYSTEM_ERROR"
CANCELED = "CANCELED"
FINAL_STATES = frozenset({COMPLETE, EXECUTOR_ERROR, SYSTEM_ERROR, CANCELED})
ALL_STATES = (QUEUED, INITIALIZING, RUNNING, "PAUSED", COMPLETE, EXECUTOR_ERROR, SYSTEM_ERROR,
              CANCELED, CANCELING, "PREEMPTED", "UNKNOWN")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    cmd TEXT,
    pid INTEGER,
    pid_started REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    submitted REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    exit_code INTEGER,
    system_log TEXT NOT NULL DEFAULT ''
)
"""


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    request: dict[str, Any]
    state: str
    cmd: list[str]
    pid: int | None
    pid_started: float | None
    attempts: int
    submitted: float
    start_time: float | None
    end_time: float | None
    exit_code: int | None
    system_log: str


class RunDatabase:
    """The runs table; safe to use from the server's threads (one connection, one lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed change survives a power cut too, not only a killed process.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, run_id: str, request: dict[str, Any]) -> None:
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs").fetchone()[0]
            self._db.execute(
                "INSERT INTO runs (run_id, seq, request, state, submitted) VALUES (?, ?, ?, ?, ?)",
                (run_id, seq, json.dumps(request), QUEUED, time.time()))

    def update(self, run_id: str, **fields: Any) -> None:
        if "cmd" in fields:
            fields["cmd"] = json.dumps(fields["cmd"])
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE runs SET {columns} WHERE run_id = ?", (*fields.values(), run_id))

    def set_state_unless_final(self, run_id: str, state: str) -> bool:
        """Move an active run to ``state``; False if it had already ended."""
        marks = ", ".join("?" for _ in FINAL_STATES)
        with self._lock:
            changed = self._db.execute(
                f"UPDATE runs SET state = ? WHERE run_id = ? AND state NOT IN ({marks})",
                (state, run_id, *FINAL_STATES)).rowcount
        return bool(changed)

    def move_state(self, run_id: str, before: str, after: str) -> bool:
        """Move a run from ``before`` to ``after``; False if it was no longer in ``before`` (a cancel came)."""
        with self._lock:
            changed = self._db.execute("UPDATE runs SET state = ? WHERE run_id = ? AND state = ?",
                                       (after, run_id, before)).rowcount
        return bool(changed)

    def append_log(self, run_id: str, line: str) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET system_log = system_log || ? WHERE run_id = ?",
                             (line.rstrip("\n") + "\n", run_id))

    def get(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _record(row)

    def page(self, after_seq: int | None, limit: int) -> tuple[list[RunRecord], int | None]:
        """Runs newest first, ``limit`` of them, from below the sequence number ``after_seq``;
        and the sequence number to continue from (None on the last page)."""
        bound = after_seq if after_seq is not None else 2**62
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS}, seq FROM runs WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                (bound, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_record(row[:-1]) for row in rows], (rows[-1][-1] if more else None)

    def with_states(self, *states: str) -> list[RunRecord]:
        """Runs in any of ``states``, oldest first (the order queued runs start in)."""
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE state IN ({marks}) ORDER BY seq", states).fetchall()
        return [_record(row) for row in rows]

    def state_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall()
        return {state: count for state, count in rows}


_COLUMNS = ("run_id, request, state, cmd, pid, pid_started, attempts, submitted, start_time, end_time, "
            "exit_code, system_log")


def _record(row: tuple[Any, ...]) -> RunRecord:
    (run_id, request, state, cmd, pid, pid_started, attempts, submitted, start_time, end_time, exit_code,
     system_log) = row
    return RunRecord(run_id, json.loads(request), state, json.loads(cmd) if cmd else [], pid, pid_started,
                     attempts, submitted, start_time, end_time, exit_code, system_log)
