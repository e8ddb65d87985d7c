"""The leader side of the CWL runner: cwltool's workflow engine with toilray jobs as its hands.

cwltool decides what runs next (scatter, ``when``, ``valueFrom``, ``linkMerge``, ``pickValue``,
subworkflows), exactly as it does for ``cwltool`` itself; every CommandLineTool and
ExpressionTool invocation it asks for becomes a :class:`~toilray.cwl.tooljob.CWLToolJob`,
scheduled by the toilray leader with the resources the tool requests, retried, logged and
committed to the job store like any other job.

A job's ID is a hash of the tool and its input object (plus a counter for identical ones), so
a ``--restart`` that asks for the same invocation again finds its commit record and takes
its outputs instead of running it. The imported input object is kept in the job store, which
keeps those hashes stable across restarts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from argparse import Namespace
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, cast

from cwltool.command_line_tool import CommandLineTool, ExpressionTool
from cwltool.context import RuntimeContext
from cwltool.errors import WorkflowException
from cwltool.executors import JobExecutor
from cwltool.process import Process
from cwltool.utils import CWLOutputType
from cwltool.workflow import Workflow

from toilray.common import Toil
from toilray.cwl import files
from toilray.cwl.tooljob import CWLToolJob, ToolDocument, describe_tool, save_schema
from toilray.exceptions import FailedJobsException, NoSuchFileException, ToilrayError
from toilray.job import make_specs
from toilray.jobStores.jobStore import JobStore
from toilray.protocol import JobSpec
from toilray.requirements import Requirements

logger = logging.getLogger("toilray.cwl")

INPUTS_FILE = "cwl-inputs.json"
_MIB = 2**20
# An ExpressionTool only evaluates JavaScript, but a fraction of a core would let Ray start a
# worker process (a second of CPU each) per concurrent expression: one core keeps them reused.
_EXPRESSION_CORES = 1.0

OutputCallback = Callable[[Any, str], None]


class Invocation:
    """A tool run that cwltool asked for; the source turns it into a job."""

    def __init__(self, remote: RemoteTool, job_order: dict[str, Any], callback: OutputCallback,
                 runtime_context: RuntimeContext) -> None:
        self.remote = remote
        self.job_order = job_order
        self.callback = callback
        self.runtime_context = runtime_context


class RemoteTool:
    """Stands in for a CommandLineTool or ExpressionTool inside cwltool's workflow engine."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.document: ToolDocument | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.process, name)

    def job(self, job_order: dict[str, Any], output_callbacks: OutputCallback,
            runtimeContext: RuntimeContext) -> Iterator[Invocation]:
        yield Invocation(self, job_order, output_callbacks, runtimeContext)

    def describe(self) -> ToolDocument:
        if self.document is None:
            self.document = describe_tool(self.process)
        return self.document


def wrap_tools(process: Process) -> Process | RemoteTool:
    """Replace every tool in ``process`` (itself included) by a RemoteTool."""
    if isinstance(process, CommandLineTool | ExpressionTool):
        return RemoteTool(process)
    if isinstance(process, Workflow):
        for step in process.steps:
            # A RemoteTool stands in for the Process: cwltool only calls job() and reads attributes.
            step.embedded_tool = cast(Process, wrap_tools(step.embedded_tool))
    return process


class CWLJobSource:
    """Feeds the leader the tool invocations cwltool's engine yields, and answers cwltool."""

    def __init__(self, jobs: Iterator[Any], runtime_context: RuntimeContext, worker_runtime: dict[str, Any],
                 bypass_file_store: bool, defaults: Requirements) -> None:
        self._jobs = jobs
        self._defaults = defaults
        self._runtime_context = runtime_context
        self._worker_runtime = worker_runtime
        self._bypass = bypass_file_store
        self._pending: dict[str, Invocation] = {}
        self._seen: Counter[str] = Counter()
        self.exhausted = False

    def take_jobs(self) -> list[JobSpec]:
        specs: list[JobSpec] = []
        if self.exhausted:
            return specs
        for item in self._jobs:
            if item is None:
                return specs
            if isinstance(item, Invocation):
                specs.extend(self._spec_for(item))
            else:
                item.run(self._runtime_context)
        self.exhausted = True
        return specs

    def _spec_for(self, invocation: Invocation) -> list[JobSpec]:
        remote = invocation.remote
        document = remote.describe()
        cores, memory, disk = self._resources(remote.process, invocation)
        tool_id = str(remote.process.tool.get("id", ""))
        name = tool_id.rsplit("#", 1)[-1].rsplit("/", 1)[-1] or type(remote.process).__name__
        key = json.dumps([document.key, invocation.job_order], sort_keys=True, default=str)
        self._seen[key] += 1
        job_id = hashlib.sha256(f"{key}\0{self._seen[key]}".encode()).hexdigest()[:32]
        job = CWLToolJob(document, invocation.job_order, self._worker_runtime, cores, memory, disk, name,
                         self._bypass, job_id, cache=not self._bypass and _reusable(remote.process))
        self._pending[job_id] = invocation
        return make_specs(job, self._defaults)

    def _resources(self, tool: Process, invocation: Invocation) -> tuple[float, int, int]:
        builder = tool._init_job(invocation.job_order, invocation.runtime_context)
        if isinstance(tool, CommandLineTool):
            # Raises UnsupportedRequirement here, as cwltool would, e.g. for DockerRequirement
            # with --no-container: the run stops with cwltool's message and exit status.
            tool.make_job_runner(invocation.runtime_context)
        wanted = tool.evalResources(builder, invocation.runtime_context)
        cores = _EXPRESSION_CORES if isinstance(tool, ExpressionTool) else float(wanted.get("cores", 1))
        memory = int(float(wanted.get("ram", 256)) * _MIB)
        disk = int((float(wanted.get("tmpdirSize", 1024)) + float(wanted.get("outdirSize", 1024))) * _MIB)
        return cores, memory, disk

    def job_succeeded(self, job_id: str, value: Any) -> None:
        invocation = self._pending.pop(job_id)
        invocation.callback(value["output"], value["status"])

    def job_failed(self, job_id: str) -> None:
        invocation = self._pending.pop(job_id, None)
        if invocation is not None:
            invocation.callback({}, "permanentFail")


def _reusable(process: Process) -> bool:
    """Whether the tool lets its results be reused (CWL's WorkReuse; cwltool's cache asks the same)."""
    requirement, _ = process.get_requirement("WorkReuse")
    return not requirement or requirement.get("enableReuse") is not False


def _updates_in_place(process: Process) -> bool:
    found = False

    def check(document: Any) -> None:
        nonlocal found
        for entry in [*document.get("requirements", ()), *document.get("hints", ())]:
            if entry.get("class") == "InplaceUpdateRequirement" and entry.get("inplaceUpdate"):
                found = True

    process.visit(check)
    return found


def warm_worker() -> None:
    """What a tool job needs imported, for ``toilray.cluster.warm_up``."""
    import cwltool.executors  # noqa: F401  (imported for the side effect: a ready worker)

    import toilray.cwl.tooljob
    import toilray.worker  # noqa: F401  (what every job's Ray task runs)


class ToilrayExecutor(JobExecutor):
    """cwltool's JobExecutor interface, running the tools as toilray jobs."""

    def __init__(self, toil_options: Namespace, worker_runtime: dict[str, Any], bypass_file_store: bool) -> None:
        super().__init__()
        self.toil_options = toil_options
        self.worker_runtime = worker_runtime
        self.bypass_file_store = bypass_file_store

    def run_jobs(self, process: Process, job_order_object: MutableMapping[str, CWLOutputType | None],
                 logger: logging.Logger,
                 runtime_context: RuntimeContext) -> None:
        if not self.bypass_file_store and _updates_in_place(process):
            logger.warning("The workflow updates files in place (InplaceUpdateRequirement): its steps pass files "
                           "as local paths (--bypass-file-store), so all workers must share a file system")
            self.bypass_file_store = True
        inputs = None
        if not self.toil_options.restart:
            # Check the inputs before a job store exists: a mistake leaves nothing behind.
            inputs = dict(process._init_job(job_order_object, runtime_context).job)
            if not self.bypass_file_store:
                files.check_local_inputs(inputs)
        try:
            with Toil(self.toil_options) as toil:
                store = toil.jobStore
                config = toil.config
                assert config is not None
                runtime_context.make_fs_access = files.fs_access_factory(store)
                job_order = self._stored_inputs(inputs, runtime_context, store)
                save_schema(store, process)
                step_context = runtime_context.copy()
                step_context.toplevel = False
                runnable = wrap_tools(process)
                runtime = dict(self.worker_runtime)
                if self.bypass_file_store:
                    runtime["bypass_dir"] = tempfile.mkdtemp(prefix="bypass-", dir=runtime_context.outdir)
                source = CWLJobSource(runnable.job(job_order, self.output_callback, step_context), step_context,
                                      runtime, self.bypass_file_store, config.defaults)
                toil.drive(source)
                if not self.final_output or self.final_status[0] != "success":
                    # Let Toil keep the job store for --restart.
                    raise FailedJobsException(store.locator, ["(the workflow did not finish)"])
                if self.final_output[0] is not None and not self.bypass_file_store:
                    staging = tempfile.mkdtemp(prefix="outputs-", dir=runtime_context.outdir)
                    files.export_files(store, self.final_output[0], staging)
        except FailedJobsException:
            logger.error("Some steps failed; the job store %s was kept: rerun with --jobStore %s --restart",
                         self.toil_options.jobStore, self.toil_options.jobStore)
            if not self.final_status or self.final_status[0] == "success":
                self.final_output[:] = [None]
                self.final_status[:] = ["permanentFail"]

    def _stored_inputs(self, inputs: dict[str, Any] | None, runtime_context: RuntimeContext,
                       store: JobStore) -> dict[str, Any]:
        """The input object with every file in the job store: imported once, then reused."""
        if inputs is None:
            try:
                return json.loads(store.read_shared(INPUTS_FILE))
            except NoSuchFileException:
                raise WorkflowException(f"The job store {store.locator} holds no CWL inputs to restart") from None
        if not self.bypass_file_store:
            try:
                files.import_files(store, inputs, runtime_context.basedir or os.getcwd())
            except (OSError, ToilrayError) as exc:
                raise WorkflowException(f"Cannot read an input: {exc}") from None
        store.write_shared(INPUTS_FILE, json.dumps(inputs, default=str).encode())
        return inputs
