"""One CWL tool invocation as a toilray job: the worker side of the CWL runner.

The job carries the tool's document (not a pickled cwltool object: those hold loaders that
do not survive pickling), the requirements it inherits from its workflow, and its input
object with job-store locations. In the worker it fetches the inputs through the node cache,
runs the tool with cwltool's own executor, stores the outputs and returns the output object.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
import urllib.parse
from dataclasses import dataclass
from typing import Any, cast

from toilray.callCache import CallIdentity
from toilray.cwl import files
from toilray.cwl.callkey import tool_identity
from toilray.exceptions import NoSuchFileException, ToilrayError
from toilray.job import Job
from toilray.lib.files import build_tree
from toilray.lib.processes import environment_set

logger = logging.getLogger("toilray.cwl")

# cwltool runtime settings a worker needs, taken from the command line of the run.
RUNTIME_KEYS = (
    "use_container", "default_container", "singularity", "podman", "strict_memory_limit", "strict_cpu_limit",
    "preserve_environment", "preserve_entire_environment", "eval_timeout", "debug", "js_console",
    "compute_checksum", "no_read_only", "no_match_user", "force_docker_pull", "pull_image", "rm_container",
    "user_space_docker_cmd", "custom_net", "tmpdir_prefix", "tmp_outdir_prefix", "streaming_allowed",
)


class CWLToolFailed(ToilrayError):
    """The tool ran but its process status was not 'success'."""


class OutputLinkOutside(ToilrayError):
    """A tool's output is a symbolic link to a file outside its output directory."""


@dataclass(frozen=True, slots=True)
class ToolDocument:
    """Everything needed to rebuild a cwltool Process in another process."""

    document: str  # JSON of the tool's (loaded, expanded) document
    requirements: str  # JSON: the requirements and hints it inherits
    hints: str
    metadata: str

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for part in (self.document, self.requirements, self.hints, self.metadata):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()


def describe_tool(tool: Any) -> ToolDocument:
    def dump(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    return ToolDocument(dump(tool.tool), dump(tool.requirements), dump(tool.hints), dump(tool.metadata))


SCHEMA_FILE = "cwl-schema.pickle"

_tools: dict[str, Any] = {}
_schemas: dict[str, Any] = {}


def save_schema(store: Any, process: Any) -> None:
    """Keep the leader's loaded CWL schema in the job store: loading it costs a worker about a
    second of parsing, reading it back a few milliseconds. The format ontology a document
    names in ``$schemas`` goes with it (tools check their inputs' formats against it)."""
    import cwltool.process

    graph = process.formatgraph if process.metadata.get("$schemas") else None
    schema = {"names": process.doc_schema, "file": cwltool.process.SCHEMA_FILE, "dir": cwltool.process.SCHEMA_DIR,
              "any": cwltool.process.SCHEMA_ANY, "graph": graph}
    store.write_shared(SCHEMA_FILE, pickle.dumps(schema, protocol=pickle.HIGHEST_PROTOCOL))


def _load_schema(store: Any) -> dict[str, Any]:
    """The schema for validating tools and its format ontology; also primes cwltool's
    File/Directory/Any types."""
    import cwltool.process

    key = store.shared_key(SCHEMA_FILE)
    cache_key = f"{store.locator}/{key}"
    if cache_key not in _schemas:
        try:
            schema = pickle.loads(store.read_shared(SCHEMA_FILE))
        except NoSuchFileException:
            schema = {"names": None, "graph": None}
        _schemas[cache_key] = schema
        if cwltool.process.SCHEMA_FILE is None and schema["names"] is not None:
            cwltool.process.SCHEMA_FILE = schema["file"]
            cwltool.process.SCHEMA_DIR = schema["dir"]
            cwltool.process.SCHEMA_ANY = schema["any"]
    return _schemas[cache_key]


def build_tool(doc: ToolDocument, store: Any, runtime: dict[str, Any]) -> Any:
    """The cwltool Process for ``doc``, made once per worker process."""
    tool = _tools.get(doc.key)
    if tool is None:
        from cwltool.context import LoadingContext
        from ruamel.yaml.comments import CommentedMap
        from schema_salad.sourceline import cmap

        from toilray.cwl.containers import make_tool

        context = LoadingContext()
        context.construct_tool_object = make_tool
        schema = _load_schema(store)
        context.avsc_names = schema["names"]
        # The leader's cwltool checked the expressions when it loaded the document.
        context.disable_js_validation = True
        context.requirements = json.loads(doc.requirements)
        context.hints = json.loads(doc.hints)
        context.podman = bool(runtime.get("podman"))
        context.singularity = bool(runtime.get("singularity"))
        context.metadata = json.loads(doc.metadata)
        # cwltool expects ruamel's maps and lists (it reads their line numbers for messages).
        tool = make_tool(cast(CommentedMap, cmap(json.loads(doc.document))), context)
        tool.formatgraph = schema["graph"]
        _tools[doc.key] = tool
    return tool


class CWLToolJob(Job):
    """Runs one CommandLineTool or ExpressionTool invocation."""

    def __init__(self, doc: ToolDocument, job_order: dict[str, Any], runtime: dict[str, Any],
                 cores: float, memory: int, disk: int, name: str, bypass_file_store: bool, job_id: str,
                 cache: bool = False) -> None:
        super().__init__(cores=cores, memory=memory, disk=disk, unitName=name, displayName=name, jobStoreID=job_id,
                         cache=cache)
        self.doc = doc
        self.job_order = job_order
        self.runtime = runtime
        self.bypass_file_store = bypass_file_store

    def callIdentity(self) -> CallIdentity:
        """cwltool's notion of what determines a tool's result (see ``toilray.cwl.callkey``)."""
        manifests = files.ManifestCache(self.fileStore.jobStore)
        return tool_identity(self.doc.document, self.doc.requirements, self.doc.hints, self.job_order, self.runtime,
                             manifests)

    def run(self, fileStore: Any) -> dict[str, Any]:
        from cwltool.errors import WorkflowException
        from cwltool.executors import SingleJobExecutor

        from toilray.cwl.containers import ToolRuntimeContext, missing_image

        tool = build_tool(self.doc, fileStore.jobStore, self.runtime)
        work = fileStore.getLocalTempDir()
        job_order = copy.deepcopy(self.job_order)
        originals: dict[str, str] = {}
        context = ToolRuntimeContext(dict(self.runtime))
        if self.bypass_file_store:
            _forget_listings(job_order)
        else:
            context.link_targets = _fetch_inputs(job_order, fileStore, os.path.join(work, "in"), originals)
        context.basedir = work
        context.outdir = os.path.join(work, "out")
        if not self.runtime.get("tmpdir_prefix"):
            context.tmpdir_prefix = os.path.join(work, "tmp", "")
        if not self.runtime.get("tmp_outdir_prefix"):
            context.tmp_outdir_prefix = os.path.join(work, "outtmp", "")
        if self.bypass_file_store:
            # Outputs stay where the tool wrote them, in a directory that outlives the job: moving
            # them would move an input that the tool updated in place (InplaceUpdateRequirement)
            # away from the steps that still read it.
            context.tmp_outdir_prefix = os.path.join(self.runtime["bypass_dir"], os.path.basename(work), "")
            context.move_outputs = "leave"
            context.rm_tmpdir = False
        elif not self.runtime.get("tmpdir_prefix") and not self.runtime.get("tmp_outdir_prefix"):
            # _store_outputs stores them from where the tool wrote them: cwltool's moving would
            # first resolve their links, hiding one that leads outside the tool's directories.
            # They are inside ``work``, which toilray removes when the job ends.
            context.move_outputs = "leave"
            context.rm_tmpdir = False
        os.makedirs(os.path.dirname(context.tmpdir_prefix), exist_ok=True)
        os.makedirs(os.path.dirname(context.tmp_outdir_prefix), exist_ok=True)
        # The leader's --preserve-environment values: a user means the environment they started
        # the run in, not the Ray worker's.
        environment = dict(self.runtime.get("environment", {}))
        if self.runtime.get("docker_host"):
            # For the docker command cwltool runs (the container itself does not see it).
            environment["DOCKER_HOST"] = self.runtime["docker_host"]
        with environment_set(environment):
            try:
                output, status = SingleJobExecutor().execute(tool, job_order, context, logger=_cwl_logger())
            except WorkflowException as exc:
                missing = missing_image(exc)
                if missing is None:
                    raise
                raise missing from None
        if status != "success" or output is None:
            raise CWLToolFailed(f"Tool {self.unitName} finished with status {status}")
        if not self.bypass_file_store:
            allowed = (os.path.dirname(context.tmp_outdir_prefix), os.path.join(work, "in"), *context.link_targets,
                       *{os.path.dirname(os.path.realpath(path)) for path in originals},
                       *_document_paths(json.loads(self.doc.document)))
            _store_outputs(output, fileStore, originals, allowed)
        return {"output": output, "status": status}




def _cwl_logger() -> logging.Logger:
    from cwltool.loghandler import _logger

    return _logger


def _fetch_inputs(job_order: Any, fileStore: Any, into: str, originals: dict[str, str]) -> tuple[str, ...]:
    """Give every stored File and Directory a local path on this node; return the directories
    outside ``into`` that the files of input directories link to (the node cache's)."""
    manifests = files.ManifestCache(fileStore.jobStore)
    link_targets: set[str] = set()

    def fetch_file(file_id: str) -> str:
        return str(fileStore.readGlobalFile(file_id))

    def fetch_into(file_id: str, dest: str) -> None:
        fileStore.readGlobalFile(file_id, userPath=dest)
        if os.path.islink(dest):
            link_targets.add(os.path.dirname(os.path.realpath(dest)))

    def place(obj: dict[str, Any], path: str) -> None:
        originals[path] = obj["location"]
        obj["location"] = "file://" + urllib.parse.quote(path)
        obj.pop("path", None)
        obj.pop("dirname", None)

    def visit(obj: dict[str, Any]) -> None:
        location = str(obj.get("location", ""))
        if location.startswith(files.FILE_SCHEME):
            place(obj, fetch_file(files.file_id_of(location)))
        elif location.startswith(files.DIR_SCHEME):
            root = os.path.join(into, os.urandom(8).hex(), obj.get("basename") or "dir")
            build_tree(manifests.subtree(location), root, fetch_into)
            place(obj, root)
            # cwltool lists the directory again, as deep as the tool's loadListing asks (a listing
            # shipped along can differ from what cwltool itself would give the tool).
            obj.pop("listing", None)
            return
        for key in ("secondaryFiles", "listing"):
            for entry in obj.get(key, ()):
                visit(entry)

    for obj in _top_files(job_order):
        visit(obj)
    return tuple(sorted(link_targets))


def _forget_listings(job_order: Any) -> None:
    """Let cwltool list local input directories afresh: a listing made when the directory was an
    output is stale once a step updated the directory in place."""
    for obj in _top_files(job_order):
        if obj["class"] == "Directory" and files.local_path(str(obj.get("location", ""))) is not None:
            obj.pop("listing", None)


def _top_files(obj: Any) -> list[dict[str, Any]]:
    if isinstance(obj, dict):
        if obj.get("class") in ("File", "Directory"):
            return [obj]
        return [found for value in obj.values() for found in _top_files(value)]
    if isinstance(obj, list):
        return [found for value in obj for found in _top_files(value)]
    return []


def _document_paths(document: Any) -> set[str]:
    """The local files and directories the tool's document itself names (e.g. in its
    InitialWorkDirRequirement), which cwltool stages as links."""
    found = set()
    for obj in files.walk_files(document):
        path = files.local_path(str(obj.get("location", "")))
        if path is not None and os.path.isabs(path):
            found.add(os.path.realpath(path))
    return found


def _store_outputs(output: Any, fileStore: Any, originals: dict[str, str], allowed: tuple[str, ...]) -> None:
    """Put every local File and Directory of the output object into the job store; a file whose
    links lead outside the ``allowed`` directories (the tool's output directories, its inputs')
    is refused, as the CWL standard asks."""
    store = fileStore.jobStore

    def store_file(path: str) -> str:
        if path in originals:
            return originals[path]
        target = os.path.realpath(path)
        if not any(target == root or target.startswith(root.rstrip("/") + "/") for root in allowed):
            raise OutputLinkOutside(f"The output {os.path.basename(path)} is a link to {target}, outside the "
                                    "tool's output directory: not retrieved")
        return files.file_location(str(fileStore.writeGlobalFile(path)))

    def visit(obj: dict[str, Any]) -> None:
        path = files.local_path(str(obj.get("location", "")))
        if path is not None and obj.get("class") == "File":
            obj["location"] = store_file(path)
            obj.pop("path", None)
            obj.pop("dirname", None)
        elif path is not None and obj.get("class") == "Directory":
            entries = files.store_tree(path, lambda file_path: files.file_id_of(store_file(file_path)))
            location = files.write_manifest(store, obj.get("basename") or os.path.basename(path), entries)
            obj["location"] = location
            obj.pop("path", None)
            files.stored_listing(obj, location, entries)
            return
        for entry in obj.get("secondaryFiles", ()):
            visit(entry)
        for entry in obj.get("listing", ()):
            visit(entry)

    for obj in _top_files(output):
        visit(obj)
