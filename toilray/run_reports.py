"""What a running workflow tells the outside: the status record, per-job statistics,
``--writeLogs`` files, the ``--writeMessages`` file, the progress line and the ``--statusWait``
log lines. The leader decides; this module records."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import time
from typing import Any

from toilray.config import ReportOptions
from toilray.jobStores.jobStore import JobStore
from toilray.progress import Progress
from toilray.protocol import JobSpec, Outcome
from toilray.stats import write_records

logger = logging.getLogger("toilray.leader")

# Seconds between rewrites of the job store's status record while the workflow runs.
STATUS_INTERVAL = 1.0

# Toil's message bus topics, so that Toil's readers (MessageBus.scan_bus_messages) read the file.
_TOPIC = "toil.bus."


def _bus_line(kind: str, *fields: str | int) -> str:
    """One message in Toil's bus file format: topic and fields, tab-separated, strings escaped."""
    parts = [f.encode("unicode_escape").decode("ascii") if isinstance(f, str) else str(f) for f in fields]
    return "\t".join([_TOPIC + kind, *parts]) + "\n"


class RunReports:
    def __init__(self, store: JobStore, options: ReportOptions) -> None:
        self._store = store
        self._options = options
        self._records: list[dict[str, Any]] = []
        self._status_written = 0.0
        self._session = os.urandom(4).hex()
        self._progress = Progress(options.show_progress)
        self._leader = f"pid {os.getpid()} on {socket.gethostname()}"
        self._status_logged = time.monotonic()
        self._messages = options.write_messages
        if self._messages:
            # Each run writes the file afresh, as Toil does.
            with open(self._messages, "w", encoding="ascii"):
                pass

    def _message(self, kind: str, *fields: str | int) -> None:
        if self._messages:
            # Appended one message at a time, so a reader following the file sees each as it happens.
            with open(self._messages, "a", encoding="ascii") as handle:
                handle.write(_bus_line(kind, *fields))

    def jobs_issued(self, task_id: int, specs: list[JobSpec]) -> None:
        for spec in specs:
            self._message("JobIssuedMessage", spec.display_name or spec.name, spec.id, task_id)

    def attempt_ended(self, spec: JobSpec, ok: bool) -> None:
        """An attempt of the job ended, however it ended (also when its worker died)."""
        code = 0 if ok else 1
        self._message("JobUpdatedMessage", spec.id, code)
        self._message("JobCompletedMessage", spec.display_name or spec.name, spec.id, code)

    def job_failed(self, spec: JobSpec) -> None:
        """The job failed for good: no attempts left."""
        self._message("JobFailedMessage", spec.display_name or spec.name, spec.id)

    def attempt_finished(self, task_id: int, spec: JobSpec, attempt: int, outcome: Outcome) -> None:
        """A job attempt reported back (successfully or not)."""
        self.attempt_ended(spec, outcome.ok)
        if self._options.record_stats:
            self._records.append({
                "job_id": outcome.job_id, "name": spec.name, "category": spec.display_name or spec.name,
                "attempt": attempt, "ok": outcome.ok, "start": outcome.started, "wall": outcome.wall_time,
                "cpu": outcome.cpu_time, "memory_kib": outcome.memory_kib, "node": outcome.node,
                "pid": outcome.pid, "task": f"{self._session}-{task_id}", "cache": outcome.cache,
            })
        directory = self._options.write_logs_dir
        if directory and outcome.log and (not outcome.ok or self._options.write_logs_from_all_jobs):
            # --writeLogs: one file per attempt of a failed job (or of every job).
            os.makedirs(directory, exist_ok=True)
            name = os.path.join(directory, f"{spec.name}_{spec.id[:8]}_attempt{attempt}.log")
            data = outcome.log.encode()
            if self._options.write_logs_gzip:
                with gzip.open(name + ".gz", "wb") as handle:
                    handle.write(data)
            else:
                with open(name, "wb") as handle:
                    handle.write(data)

    def status_due(self) -> bool:
        return time.monotonic() - self._status_written >= STATUS_INTERVAL

    def status(self, state: str, counts: dict[str, Any]) -> None:
        """Rewrite the record `toilray status` reads."""
        self._status_written = time.monotonic()
        self._store.write_status({"state": state, "leader": self._leader, "updated": time.time(), **counts})

    def progress(self, done: int, running: int, queued: int, failed: int, force: bool = False) -> None:
        self._progress.update(done, running, queued, failed, force)
        now = time.monotonic()
        if now - self._status_logged >= self._options.status_wait:
            self._status_logged = now
            logger.info("Workflow status: %d done, %d running, %d queued, %d failed", done, running, queued, failed)

    def show_failure(self, report: str, log: str) -> bool:
        """Show a failed attempt's log to the user watching (a notebook); whether it was shown."""
        return self._progress.job_failed(report, log)

    def close(self) -> None:
        self._progress.close()
        write_records(self._store, self._records)
