"""The leader side of the WDL runner: miniwdl's workflow state machine with toilray jobs as
its hands.

miniwdl's ``StateMachine`` evaluates the workflow's expressions and says which call is ready;
each task call becomes a :class:`~toilray.wdl.taskjob.WDLTaskJob` with the task's runtime
section as its requirements, and each subworkflow call a state machine of its own here in the
leader. A job's ID is a hash of where the call is and its inputs, so a ``--restart`` that
reaches the same call with the same inputs finds its commit and takes its outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from typing import Any

import WDL
from WDL.runtime.workflow import StateMachine

from toilray.exceptions import ToilrayError
from toilray.job import make_specs
from toilray.jobStores.jobStore import JobStore
from toilray.protocol import JobSpec
from toilray.requirements import Requirements
from toilray.wdl import files
from toilray.wdl.backend import TaskBackend
from toilray.wdl.taskjob import TaskRef, WDLTaskJob, miniwdl_config

logger = logging.getLogger("toilray.wdl")
# miniwdl's state machine logs every node it visits here (at INFO).
STATE_LOGGER = "toilray.wdl.workflow"

_GB = 10**9
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": _GB, "gb": _GB, "t": 10**12,
          "tb": 10**12, "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30,
          "ti": 2**40, "tib": 2**40}


class WDLEvaluationError(ToilrayError):
    """A workflow expression failed while the workflow ran (in the leader)."""


class LeaderStdLib(WDL.StdLib.Base):
    """The standard library for workflow expressions: Files are job store values, fetched into
    a scratch directory when read, stored when written."""

    def __init__(self, wdl_version: str, store: JobStore, scratch: str) -> None:
        super().__init__(wdl_version, write_dir=os.path.join(scratch, "written"))
        self._store = store
        # The allowlist of the state machine evaluating now: miniwdl lets a workflow use only
        # the files its inputs and calls named, and those put there (what write_* made).
        self.allowlist: set[str] = set()
        self._fetcher = files.Fetcher(os.path.join(scratch, "read"),
                                      lambda file_id, path: store.read_file(file_id, path, allow_link=True),
                                      lambda file_id: files.read_bytes(store, file_id))

    def _devirtualize_filename(self, filename: str) -> str:
        if files.is_stored(filename):
            return self._fetcher.local(filename)
        return filename

    def _virtualize_filename(self, filename: str) -> str:
        uri = files.store_file(self._store.write_file, filename)
        self.allowlist.add(uri)
        return uri

    def _resolve_source_relative_path(self, filename: str) -> str:
        return filename


def byte_size(value: Any, default_unit: str = "") -> int | None:
    """``"4 GiB"``, ``"2G"``, ``1000000`` -> bytes; None when it is not a size."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(value))
    if match is None:
        return None
    unit = (match.group(2) or default_unit).lower()
    if unit not in _UNITS:
        return None
    return int(float(match.group(1)) * _UNITS[unit])


def disk_bytes(value: Any) -> int | None:
    """WDL ``disks``: ``"local-disk 10 HDD"``, ``"/mnt 20 SSD"``, ``"10 GiB"``, a number of GiB,
    or a list of those; the total."""
    entries = value if isinstance(value, list) else [value]
    total = 0
    for entry in entries:
        parts = str(entry).split()
        numbers = [part for part in parts if re.fullmatch(r"[0-9.]+", part)]
        if not numbers:
            return None
        after = parts[parts.index(numbers[0]) + 1] if parts.index(numbers[0]) + 1 < len(parts) else ""
        unit = after if after.lower() in _UNITS and after.lower() not in ("hdd", "ssd") else "GiB"
        size = byte_size(numbers[0], unit)
        if size is None:
            return None
        total += size
    return total


def _evaluate_runtime(task: WDL.Tree.Task, inputs: WDL.Env.Bindings[WDL.Value.Base],
                      stdlib: WDL.StdLib.Base) -> dict[str, Any]:
    """The task's runtime values that can be known from its inputs (as JSON values); a value
    that needs the task's own evaluation is left out (the job then gets the defaults)."""
    env = inputs
    for decl in [*(task.inputs or []), *task.postinputs]:
        if env.has_binding(decl.name):
            continue
        if decl.expr is None:
            if decl.type.optional:
                env = env.bind(decl.name, WDL.Value.Null())
            continue
        try:
            env = env.bind(decl.name, decl.expr.eval(env, stdlib).coerce(decl.type))
        except Exception:
            logger.debug("runtime: %s of task %s left to the worker", decl.name, task.name)
    values: dict[str, Any] = {}
    for key, expr in task.runtime.items():
        try:
            values[key] = expr.eval(env, stdlib).json
        except Exception:
            logger.debug("runtime: %s of task %s left to the worker", key, task.name)
    return values


def requirements_of(runtime: dict[str, Any], max_cores: int) -> dict[str, Any]:
    """toilray requirements for a task's runtime section (cores at most ``max_cores``, as
    miniwdl caps ``cpu`` at the host's)."""
    wanted: dict[str, Any] = {"cores": 1}
    if "cpu" in runtime:
        with contextlib.suppress(TypeError, ValueError):
            wanted["cores"] = min(max(float(runtime["cpu"]), 1.0), float(max_cores))
    memory = byte_size(runtime["memory"]) if "memory" in runtime else None
    if memory:
        wanted["memory"] = memory
    disk = disk_bytes(runtime["disks"]) if "disks" in runtime else None
    if disk:
        wanted["disk"] = disk
    gpus = 0
    if runtime.get("gpu") is True:
        gpus = int(runtime.get("gpuCount", 1) or 1)
    elif isinstance(runtime.get("gpu"), int) and not isinstance(runtime.get("gpu"), bool):
        gpus = int(runtime["gpu"])
    if "nvidiaGpu" in runtime or "acceleratorCount" in runtime:
        gpus = int(runtime.get("acceleratorCount", 1) or 1)
    if gpus:
        wanted["accelerators"] = [{"kind": "gpu", "count": gpus}]
    preemptible = runtime.get("preemptible")
    if preemptible is not None:
        wanted["preemptible"] = bool(preemptible) and preemptible not in ("false", "0", 0)
    return wanted


class _Frame:
    """One running workflow: the top one, or a subworkflow call inside its parent frame."""

    def __init__(self, state: StateMachine, prefix: str, parent: tuple[_Frame, str] | None) -> None:
        self.state = state
        self.prefix = prefix
        self.parent = parent


class WDLJobSource:
    """Feeds the leader the task calls miniwdl's state machines ask for, and answers them."""

    def __init__(self, document: str, document_key: str, workflow: WDL.Tree.Workflow,
                 inputs: WDL.Env.Bindings[WDL.Value.Base], store: JobStore, backend: TaskBackend,
                 defaults: Requirements, scratch: str) -> None:
        self._document = document
        self._document_key = document_key
        self._store = store
        self._backend = backend
        self._defaults = defaults
        self._scratch = scratch
        self._cfg = miniwdl_config(backend)
        self._stdlib = LeaderStdLib(workflow.effective_wdl_version, store, self._scratch)
        self._max_cores = os.cpu_count() or 1
        self._ready = [_Frame(StateMachine(STATE_LOGGER, self._scratch, workflow, inputs), "", None)]
        self._pending: dict[str, tuple[_Frame, str]] = {}
        self._warned_images: set[str] = set()
        self.outputs: WDL.Env.Bindings[WDL.Value.Base] | None = None
        self.error: ToilrayError | None = None
        self.failed = False

    def take_jobs(self) -> list[JobSpec]:
        specs: list[JobSpec] = []
        while self._ready and self.error is None and not self.failed:
            frame = self._ready.pop()
            try:
                self._stdlib.allowlist = frame.state.fspath_allowlist
                call = frame.state.step(self._cfg, self._stdlib)
                while call is not None:
                    if isinstance(call.callee, WDL.Tree.Workflow):
                        child = StateMachine(STATE_LOGGER, self._scratch, call.callee, call.inputs)
                        self._ready.append(_Frame(child, f"{frame.prefix}{call.id}/", (frame, call.id)))
                    else:
                        specs.extend(self._spec_for(frame, call))
                    call = frame.state.step(self._cfg, self._stdlib)
            except (WDL.Error.RuntimeError, WDL.Error.EvalError, WDL.Error.InputError) as exc:
                self.error = WDLEvaluationError(f"{_where(exc)}{exc}")
                break
            if frame.state.outputs is not None:
                self._finish(frame)
        return specs

    def _finish(self, frame: _Frame) -> None:
        outputs = frame.state.outputs
        assert outputs is not None
        if frame.parent is None:
            self.outputs = outputs
            return
        parent, call_id = frame.parent
        parent.state.call_finished(call_id, outputs)
        self._ready.append(parent)

    def _spec_for(self, frame: _Frame, call: StateMachine.CallInstructions) -> list[JobSpec]:
        task = call.callee
        assert isinstance(task, WDL.Tree.Task)
        inputs = WDL.values_to_json(call.inputs)
        runtime = _evaluate_runtime(task, call.inputs, self._stdlib)
        image = runtime.get("docker") or runtime.get("container")
        if image and not self._backend.uses_containers and task.name not in self._warned_images:
            self._warned_images.add(task.name)
            logger.warning("Task %s names the container image %s; no container engine is in use, so it runs "
                           "natively", task.name, image)
        name = f"{frame.prefix}{call.id}"
        key = json.dumps([name, task.digest, inputs], sort_keys=True)
        job_id = hashlib.sha256(key.encode()).hexdigest()[:32]
        ref = TaskRef(self._document, self._document_key, task.name, task.digest)
        job = WDLTaskJob(ref, inputs, self._backend, requirements_of(runtime, self._max_cores), name, job_id)
        self._pending[job_id] = (frame, call.id)
        return make_specs(job, self._defaults)

    def job_succeeded(self, job_id: str, value: Any) -> None:
        frame, call_id = self._pending.pop(job_id)
        node = frame.state.jobs[call_id].node
        assert isinstance(node, WDL.Tree.Call) and node.callee is not None
        outputs = WDL.values_from_json(value, node.callee.effective_outputs)
        frame.state.call_finished(call_id, outputs)
        if frame not in self._ready:
            self._ready.append(frame)

    def job_failed(self, job_id: str) -> None:
        self._pending.pop(job_id, None)
        self.failed = True


def _where(error: Exception) -> str:
    pos = getattr(error, "pos", None)
    if pos is None:
        return ""
    return f"{pos.uri}:{pos.line}:{pos.column}: "
