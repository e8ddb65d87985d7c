"""One WDL task call as a toilray job: the worker side of the WDL runner.

The job carries which task of the run's document (kept in the job store by the leader) and the
call's inputs as JSON with job store Files; in the worker it fetches the inputs (siblings kept
in one directory), runs the task with miniwdl's task runtime on the chosen back end, and stores
the outputs (a symbolic link stored as the file it points to).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any

import WDL
from WDL.runtime import config as wdl_config
from WDL.runtime.error import CommandFailed, RunFailed

from toilray.exceptions import ToilrayError
from toilray.job import Job
from toilray.jobStores.jobStore import JobStore
from toilray.lib.processes import environment_set
from toilray.wdl import files
from toilray.wdl.backend import TaskBackend

logger = logging.getLogger("toilray.wdl")

_STDERR_TAIL_LINES = 20


class WDLTaskFailed(ToilrayError):
    """A task's command failed (or its outputs could not be collected)."""


# The leader's loaded document, kept in the job store for the workers: parsing it again would
# cost each fresh worker process a few tenths of a second (miniwdl builds its parser first).
DOCUMENT_FILE = "wdl-document.pickle"


@dataclass(frozen=True, slots=True)
class TaskRef:
    """Which task of the run's document (``document`` names it in messages; ``key`` is the
    digest of the stored document, which workers load once)."""

    document: str
    key: str
    name: str
    digest: str


_documents: dict[str, WDL.Tree.Document] = {}


def save_document(store: JobStore, document: WDL.Tree.Document) -> str:
    """Keep the typechecked document in the job store; its key for ``TaskRef``."""
    data = pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL)
    store.write_shared(DOCUMENT_FILE, data)
    return hashlib.sha256(data).hexdigest()


def _stored_document(store: JobStore, key: str) -> WDL.Tree.Document:
    if key not in _documents:
        _documents[key] = pickle.loads(store.read_shared(DOCUMENT_FILE))
    return _documents[key]


def find_task(store: JobStore, ref: TaskRef) -> WDL.Tree.Task:
    stack = [_stored_document(store, ref.key)]
    while stack:
        document = stack.pop()
        for task in document.tasks:
            if task.name == ref.name and task.digest == ref.digest:
                return task
        stack.extend(imported.doc for imported in document.imports if imported.doc is not None)
    raise WDLTaskFailed(f"Task {ref.name} is not in {ref.document} any more")


def warm_worker(backend: TaskBackend) -> None:
    """What a task job needs imported, for ``toilray.cluster.warm_up``."""
    import toilray.worker  # noqa: F401  (what every job's Ray task runs)

    importlib.import_module(backend.module)


def miniwdl_config(backend: TaskBackend) -> wdl_config.Loader:
    overrides = {section: dict(values) for section, values in backend.overrides.items()}
    return wdl_config.Loader(logging.getLogger("toilray.wdl.miniwdl"), overrides=overrides)


def _failure(name: str, error: RunFailed) -> WDLTaskFailed:
    cause: BaseException = error
    while isinstance(cause, RunFailed) and cause.__cause__ is not None:
        cause = cause.__cause__
    message = f"Task {name} failed: {cause}"
    if isinstance(cause, CommandFailed):
        try:
            with open(cause.stderr_file, errors="replace") as stream:
                tail = stream.read().splitlines()[-_STDERR_TAIL_LINES:]
        except OSError:
            tail = []
        if tail:
            message += "; its stderr ends:\n" + "\n".join(tail)
    return WDLTaskFailed(message)


class WDLTaskJob(Job):
    """Runs one task call and returns its outputs as JSON with job store Files."""

    def __init__(self, task: TaskRef, inputs: dict[str, Any], backend: TaskBackend, requirements: dict[str, Any],
                 name: str, job_id: str) -> None:
        super().__init__(unitName=name, displayName=name, jobStoreID=job_id, **requirements)
        self.task = task
        self.inputs = inputs
        self.backend = backend

    def run(self, fileStore: Any) -> dict[str, Any]:
        store = fileStore.jobStore
        task = find_task(store, self.task)
        work = fileStore.getLocalTempDir()
        fetcher = files.Fetcher(os.path.join(work, "in"),
                                lambda file_id, path: fileStore.readGlobalFile(file_id, path),
                                lambda file_id: files.read_bytes(store, file_id))
        inputs = WDL.values_from_json(self.inputs, task.available_inputs)

        def fetch(value: WDL.Value.File | WDL.Value.Directory) -> str:
            return fetcher.local(value.value) if files.is_stored(value.value) else value.value

        local_inputs = WDL.Value.rewrite_env_paths(inputs, fetch)
        cfg = miniwdl_config(self.backend)
        with environment_set(self.backend.environment):
            try:
                _, outputs = WDL.runtime.run_local_task(cfg, task, local_inputs, run_id=self.unitName,
                                                        run_dir=os.path.join(work, "run", "."))
            except RunFailed as exc:
                raise _failure(self.unitName, exc) from None

        def write(path: str) -> str:
            return str(fileStore.writeGlobalFile(os.path.realpath(path)))

        def store_output(value: WDL.Value.File | WDL.Value.Directory) -> str:
            path = value.value
            if isinstance(value, WDL.Value.Directory):
                return files.store_directory(write, files.manifest_writer(store), os.path.realpath(path))
            return files.store_file(write, os.path.realpath(path))

        return WDL.values_to_json(WDL.Value.rewrite_env_paths(outputs, store_output))
