"""Running WES requests: each run is a supervised leader process on the machine's Ray.

A run's leader is ``toilray run`` (py) or ``toilray-cwl-runner`` (CWL) in its own session, so
it outlives the server: it runs its jobs on the local Ray that toilray shares (or on the
``--rayAddress`` cluster), and its job store lives in the run's directory. The supervisor thread
starts queued runs while fewer than ``workers`` run, notices ends, and escalates cancels.

After a server restart the runs recorded as active are looked at one by one: a leader still alive
(same pid and start time) is adopted and watched; a leader that ended meanwhile is judged by its
job store (completed or failed); one that died mid-run is resumed with ``--restart``, so that no
finished job runs again. Queued runs then start as usual.

Layout of a run's directory (Toil's)::

    <work_dir>/<run_id>/execution/        the attachments and wes_inputs.json; the leader's cwd
    <work_dir>/<run_id>/outputs/          what a CWL run produced (--outdir)
    <work_dir>/<run_id>/toil_job_store/   its job store
    <work_dir>/<run_id>/stdout, stderr    what the leader printed (every attempt, appended)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import psutil

from toilray.exceptions import ToilrayError
from toilray.jobStores.jobStore import JobStore, JobSummary
from toilray.server import state
from toilray.server.attachments import AttachmentError, inside, safe_relative, write_attachments
from toilray.server.cwl_leader import DESTINATION_VARIABLE
from toilray.server.state import RunDatabase, RunRecord

logger = logging.getLogger(__name__)

# Seconds between the supervisor's looks at its runs.
POLL_INTERVAL = 0.5
# After a cancel: seconds until the leader's process group gets SIGTERM, then SIGKILL.
CANCEL_TERM_AFTER = 10.0
CANCEL_KILL_AFTER = 30.0
# Times a run whose leader died (not failed) is resumed before it counts as a system error.
MAX_ATTEMPTS = 3

# workflow_engine_parameters a client may set: options of both runners that change how a run
# is logged, retried and sized, never where it reads or writes on the server.
ALLOWED_ENGINE_PARAMETERS: dict[str, str] = {
    "--logLevel": "Log level of the leader: CRITICAL, ERROR, WARNING, INFO or DEBUG",
    "--logCritical": "Log only critical messages (flag)",
    "--logError": "Log errors and worse (flag)",
    "--logWarning": "Log warnings and worse (flag)",
    "--logInfo": "Log informational messages and worse (flag)",
    "--logDebug": "Log everything (flag)",
    "--retryCount": "Times a failed job is retried",
    "--maxCores": "Most cores a job may ask for",
    "--maxMemory": "Most memory a job may ask for",
    "--maxDisk": "Most disk a job may ask for",
    "--defaultCores": "Cores of a job that does not say",
    "--defaultMemory": "Memory of a job that does not say",
    "--defaultDisk": "Disk of a job that does not say",
    "--maxLogFileSize": "Most bytes of a job's log kept",
    "--stats": "Record per-job statistics (flag)",
}


_OPTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class RunRequestError(ToilrayError):
    """A WES request that cannot be run as given (HTTP 400)."""


class NoSuchRunError(ToilrayError):
    """No run has this ID (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class WorkflowType:
    name: str
    versions: tuple[str, ...]


def workflow_types() -> list[WorkflowType]:
    """The languages runs may use, with the versions each runner really supports."""
    types = [WorkflowType("CWL", ("v1.0", "v1.1", "v1.2")), WorkflowType("py", ("3",))]
    if importlib.util.find_spec("toilray.wdl") is not None:
        types.append(WorkflowType("WDL", ("draft-2", "1.0", "1.1")))
    return types


@dataclass(slots=True)
class _Live:
    """What the supervisor knows of a run's leader beyond the database."""

    popen: subprocess.Popen[bytes] | None
    process: psutil.Process
    cancel_at: float | None = None
    signalled: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    work_dir: str
    state_store: str
    workers: int
    default_options: tuple[str, ...] = ()
    ray_address: str | None = None
    dest_bucket_base: str | None = None
    max_upload_bytes: int = 100 * 1024 * 1024


class RunManager:
    """Accepts runs, keeps their state in the database, and supervises their leaders."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        os.makedirs(settings.work_dir, exist_ok=True)
        os.makedirs(settings.state_store, exist_ok=True)
        self.db = RunDatabase(os.path.join(settings.state_store, "wes-state.sqlite"))
        self._live: dict[str, _Live] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="wes-supervisor", daemon=True)

    # -- the run's files ---------------------------------------------------------------------

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.settings.work_dir, run_id)

    def execution_dir(self, run_id: str) -> str:
        return os.path.join(self.run_dir(run_id), "execution")

    def store_locator(self, run_id: str) -> str:
        return "file:" + os.path.join(self.run_dir(run_id), "toil_job_store")

    def log_path(self, run_id: str, stream: str) -> str:
        return os.path.join(self.run_dir(run_id), stream)

    # -- accepting a run ---------------------------------------------------------------------

    def submit(self, fields: dict[str, str], attachments: Iterable[tuple[str, BinaryIO]]) -> str:
        """Check the request, write its files, record it as queued; its run ID."""
        request = _parse_request(fields)
        run_id = uuid.uuid4().hex
        execution = self.execution_dir(run_id)
        os.makedirs(execution)
        try:
            names = write_attachments(execution, attachments, self.settings.max_upload_bytes)
            request["workflow_attachment"] = names
            _check_workflow_url(request["workflow_url"], execution)
            with open(os.path.join(execution, "wes_inputs.json"), "w", encoding="utf-8") as handle:
                json.dump(request["workflow_params"], handle)
        except (AttachmentError, RunRequestError, OSError):
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
            raise
        self.db.add(run_id, request)
        self._wake.set()
        return run_id

    def get(self, run_id: str) -> RunRecord:
        record = self.db.get(run_id)
        if record is None:
            raise NoSuchRunError(f"no run has the ID {run_id!r}")
        return record

    def cancel(self, run_id: str) -> None:
        record = self.get(run_id)
        if record.state in state.FINAL_STATES:
            return
        if record.state == state.QUEUED and self.db.set_state_unless_final(run_id, state.CANCELED):
            self.db.update(run_id, end_time=time.time())
            return
        self.db.set_state_unless_final(run_id, state.CANCELING)
        self._wake.set()

    def outputs(self, record: RunRecord) -> dict[str, Any]:
        """A completed CWL or WDL run's outputs (what the runner printed); {} otherwise."""
        if record.state != state.COMPLETE or record.request.get("workflow_type", "").upper() not in ("CWL", "WDL"):
            return {}
        path = os.path.join(self.run_dir(record.run_id), "outputs.json")
        try:
            with open(path, encoding="utf-8") as handle:
                value = json.load(handle)
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def tasks(self, run_id: str) -> list[JobSummary]:
        """The run's jobs from its job store's records (none before the store exists)."""
        self.get(run_id)
        store = JobStore(self.store_locator(run_id))
        if not store.exists():
            return []
        return store.job_summaries()

    # -- supervising -------------------------------------------------------------------------

    def start(self) -> None:
        self._recover()
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising; leaders keep running and the next server adopts them."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.db.close()

    def _recover(self) -> None:
        for record in self.db.with_states(state.INITIALIZING, state.RUNNING, state.CANCELING):
            process = _same_process(record.pid, record.pid_started)
            if process is not None:
                self.db.append_log(record.run_id, f"server restarted: adopted leader pid {record.pid}")
                self._live[record.run_id] = _Live(None, process)
            else:
                self.db.append_log(record.run_id, "server restarted: the leader had ended meanwhile")
                self._judge(record, exit_code=None)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                # The supervisor must outlive one bad run; the error goes to the server's log.
                logger.exception("WES supervisor step failed")
            self._wake.wait(POLL_INTERVAL)
            self._wake.clear()

    def _step(self) -> None:
        for run_id, live in list(self._live.items()):
            record = self.db.get(run_id)
            if record is None:
                continue
            if record.state == state.CANCELING:
                self._push_cancel(record, live)
            if live.popen is not None:
                code = live.popen.poll()
                if code is None:
                    continue
            elif _alive(live.process):
                continue
            else:
                code = None
            del self._live[run_id]
            # Read again: a cancel may have come since the look above.
            self._judge(self.db.get(run_id) or record, code)
        queued = self.db.with_states(state.QUEUED)
        while queued and len(self._live) < self.settings.workers and not self._stop.is_set():
            self._launch(queued.pop(0))

    def _push_cancel(self, record: RunRecord, live: _Live) -> None:
        now = time.monotonic()
        if live.cancel_at is None:
            live.cancel_at = now
            store = JobStore(self.store_locator(record.run_id))
            if store.exists():
                store.request_kill()
            else:
                live.signalled.add("TERM")
                _signal_group(live.process, signal.SIGTERM)
        elif "TERM" not in live.signalled and now - live.cancel_at > CANCEL_TERM_AFTER:
            live.signalled.add("TERM")
            _signal_group(live.process, signal.SIGTERM)
        elif "KILL" not in live.signalled and now - live.cancel_at > CANCEL_KILL_AFTER:
            live.signalled.add("KILL")
            _signal_group(live.process, signal.SIGKILL)

    def _judge(self, record: RunRecord, exit_code: int | None) -> None:
        """Decide a run's state once its leader is gone (``exit_code`` None: not our child)."""
        run_id = record.run_id
        store = JobStore(self.store_locator(run_id))
        recorded = (store.read_status() or {}).get("state") if store.root_exists() else None
        now = time.time()
        if record.state == state.CANCELING:
            self.db.update(run_id, state=state.CANCELED, end_time=now, exit_code=exit_code)
        elif exit_code == 0 or (exit_code is None and recorded == "completed"
                                and self._outputs_written(record)):
            self.db.update(run_id, state=state.COMPLETE, end_time=now, exit_code=0)
        elif exit_code is None and recorded in ("running", "interrupted", None) and store.exists():
            # The leader died with the workflow unfinished (not a failure of the workflow).
            if record.attempts >= MAX_ATTEMPTS:
                self.db.update(run_id, state=state.SYSTEM_ERROR, end_time=now)
            else:
                self.db.append_log(run_id, "the leader died mid-run: resuming it with --restart")
                self.db.update(run_id, state=state.QUEUED)
        elif exit_code is None and recorded is None and not store.exists() and record.attempts < MAX_ATTEMPTS:
            self.db.append_log(run_id, "the leader died before its workflow started: starting it again")
            self.db.update(run_id, state=state.QUEUED)
        else:
            self.db.update(run_id, state=state.EXECUTOR_ERROR, end_time=now,
                           exit_code=exit_code if exit_code is not None else 1)
        self._wake.set()

    def _outputs_written(self, record: RunRecord) -> bool:
        kind = record.request.get("workflow_type", "").upper()
        outputs = os.path.join(self.run_dir(record.run_id), "outputs.json")
        if kind == "CWL":
            return os.path.exists(outputs + ".done")
        # The WDL runner writes its --outputFile whole or not at all.
        return kind != "WDL" or os.path.exists(outputs)

    def _launch(self, record: RunRecord) -> None:
        run_id = record.run_id
        if not self.db.set_state_unless_final(run_id, state.INITIALIZING):
            return
        store = JobStore(self.store_locator(run_id))
        resume = store.exists()
        cmd = self.command(record, resume)
        try:
            with open(self.log_path(run_id, "stdout"), "ab") as out, \
                    open(self.log_path(run_id, "stderr"), "ab") as err:
                popen = subprocess.Popen(cmd, cwd=self.execution_dir(run_id), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env=self._environment(run_id))
        except OSError as exc:
            self.db.append_log(run_id, f"cannot start the leader: {exc}")
            self.db.update(run_id, state=state.SYSTEM_ERROR, end_time=time.time())
            return
        process = psutil.Process(popen.pid)
        fields: dict[str, Any] = {"cmd": cmd, "pid": popen.pid, "pid_started": process.create_time(),
                                  "attempts": record.attempts + 1}
        if record.start_time is None:
            fields["start_time"] = time.time()
        self.db.update(run_id, **fields)
        # A cancel that came while the leader started leaves the run CANCELING (the next step acts).
        self.db.move_state(run_id, state.INITIALIZING, state.RUNNING)
        self.db.append_log(run_id, f"{'resumed' if resume else 'started'} leader pid {popen.pid}")
        self._live[run_id] = _Live(popen, process)

    def _environment(self, run_id: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.settings.dest_bucket_base:
            env[DESTINATION_VARIABLE] = self.settings.dest_bucket_base.rstrip("/") + "/" + run_id
        return env

    def command(self, record: RunRecord, resume: bool) -> list[str]:
        """The leader's command line for a run (``resume``: continue its job store)."""
        request = record.request
        kind = request["workflow_type"].upper()
        run_id = record.run_id
        workflow = request["workflow_url"]
        store = self.store_locator(run_id)
        # The job store stays after success: the tasks endpoints are read from its records.
        options = ["--clean=never", *self.settings.default_options]
        if self.settings.ray_address:
            options.append(f"--rayAddress={self.settings.ray_address}")
        options += _engine_options(request.get("workflow_engine_parameters") or {})
        if resume:
            options.append("--restart")
        python = sys.executable
        if kind == "CWL":
            # The wrapper writes the output object to outputs.json, then a marker that it is whole.
            return [python, "-m", "toilray.server.cwl_leader", os.path.join(self.run_dir(run_id), "outputs.json"),
                    f"--outdir={os.path.join(self.run_dir(run_id), 'outputs')}", f"--jobStore={store}",
                    *options, workflow, "wes_inputs.json"]
        if kind == "WDL":
            runner = os.path.join(os.path.dirname(python), "toilray-wdl-runner")
            return [runner, workflow, "wes_inputs.json", f"--jobStore={store}",
                    f"--outputDirectory={os.path.join(self.run_dir(run_id), 'outputs')}",
                    f"--outputFile={os.path.join(self.run_dir(run_id), 'outputs.json')}", *options]
        # A script's inputs are its command-line options: {"name": "x"} becomes --name=x.
        inputs = [f"--{name}={value}" for name, value in request["workflow_params"].items()]
        return [python, "-m", "toilray", "run", workflow, store, *options, *inputs]


def _parse_request(fields: dict[str, str]) -> dict[str, Any]:
    def as_object(name: str) -> dict[str, Any]:
        text = fields.get(name) or "{}"
        try:
            value = json.loads(text)
        except ValueError:
            raise RunRequestError(f"{name} is not JSON") from None
        if not isinstance(value, dict):
            raise RunRequestError(f"{name} must be a JSON object")
        return value

    kind = (fields.get("workflow_type") or "").strip()
    types = {t.name.upper(): t for t in workflow_types()}
    if kind.upper() not in types:
        raise RunRequestError(f"workflow_type {kind!r} is not supported (use one of {', '.join(types)})")
    version = (fields.get("workflow_type_version") or "").strip()
    supported = types[kind.upper()].versions
    if version not in supported:
        raise RunRequestError(
            f"workflow_type_version {version!r} of {kind} is not supported (use one of {', '.join(supported)})")
    url = (fields.get("workflow_url") or "").strip()
    if not url:
        raise RunRequestError("workflow_url is missing")
    params = as_object("workflow_engine_parameters")
    for name, value in params.items():
        if name not in ALLOWED_ENGINE_PARAMETERS:
            raise RunRequestError(f"workflow_engine_parameters: {name!r} is not allowed (allowed: "
                                  f"{', '.join(ALLOWED_ENGINE_PARAMETERS)})")
        if not isinstance(value, str | int | float | bool) or "\n" in str(value):
            raise RunRequestError(f"workflow_engine_parameters: the value of {name} must be one line")
    workflow_params = as_object("workflow_params")
    if kind.upper() == "PY":
        for name, value in workflow_params.items():
            if not _OPTION_NAME.match(name) or not isinstance(value, str | int | float) or "\n" in str(value):
                raise RunRequestError(f"workflow_params of a py workflow become its options: {name!r} must be "
                                      "a name (letters, digits, '-', '_') with a one-line value")
    tags = as_object("tags")
    request: dict[str, Any] = {
        "workflow_params": workflow_params,
        "workflow_type": kind,
        "workflow_type_version": version,
        "workflow_url": url,
        "tags": {str(k): str(v) for k, v in tags.items()},
        "workflow_engine_parameters": {k: str(v) for k, v in params.items()},
    }
    for name in ("workflow_engine", "workflow_engine_version"):
        if fields.get(name):
            request[name] = fields[name]
    return request


def _check_workflow_url(url: str, execution: str) -> None:
    """A workflow is an attachment or at an http(s) URL: never a file elsewhere on the server."""
    if url.startswith(("http://", "https://")):
        return
    if ":" in url.split("/", 1)[0]:
        raise RunRequestError(f"workflow_url {url!r}: only attachments and http(s) URLs are accepted")
    try:
        relative = safe_relative(url.split("#", 1)[0])
        path = inside(execution, relative)
    except AttachmentError as exc:
        raise RunRequestError(f"workflow_url: {exc}") from None
    if not os.path.isfile(path):
        raise RunRequestError(f"workflow_url {url!r} names no attachment")


def _engine_options(params: dict[str, str]) -> list[str]:
    options = []
    for name, value in params.items():
        if value.lower() in ("", "true") and ALLOWED_ENGINE_PARAMETERS[name].endswith("(flag)"):
            options.append(name)
        else:
            options.append(f"{name}={value}")
    return options


def _same_process(pid: int | None, started: float | None) -> psutil.Process | None:
    """The process ``pid`` if it is still the one started at ``started`` (pids get reused)."""
    if pid is None or started is None:
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) > 0.01 or not _alive(process):
            return None
    except psutil.Error:
        return None
    return process


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group(process: psutil.Process, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        return
