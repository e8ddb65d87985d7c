"""``toilray-wdl-runner``: run a WDL workflow (draft-2, 1.0, 1.1) on the toilray engine, with
Toil's WDL options."""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import logging
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from toilray.exceptions import FailedJobsException, ToilrayError, report
from toilray.lib.io import AtomicFileCreate
from toilray.lib.processes import results_stream
from toilray.options import add_toil_options, embedded_ray

if TYPE_CHECKING:
    from toilray.wdl.backend import TaskBackend

INPUTS_FILE = "wdl-inputs.json"


class WDLInputError(ToilrayError):
    """The document or its inputs are not right: nothing was started."""


def make_parser() -> argparse.ArgumentParser:
    from toilray.wdl.backend import CHOICES

    parser = argparse.ArgumentParser(
        prog="toilray-wdl-runner",
        description="Run a WDL workflow on toilray. The job store defaults to a new directory that is removed "
                    "when the run succeeds.")
    parser.add_argument("wdl", metavar="WORKFLOW.wdl", help="The WDL document (a path or URL)")
    parser.add_argument("inputs_positional", metavar="INPUTS.json", nargs="?", default=None,
                        help="The inputs, keyed workflow.input or workflow.call.input (none: {})")
    group = parser.add_argument_group("WDL options")
    group.add_argument("-i", "--input", dest="inputs_file", default=None, help="The inputs JSON file")
    group.add_argument("-o", "--outputDirectory", dest="outputDirectory", default=None,
                       help="Where the output files are copied (default: here); a name already taken goes into a "
                            "subdirectory")
    group.add_argument("-m", "--outputFile", dest="outputFile", default=None,
                       help="Also write the outputs JSON to this file")
    group.add_argument("--outputDialect", choices=("cromwell", "miniwdl"), default="cromwell",
                       help="cromwell: the outputs object; miniwdl: {'dir': ..., 'outputs': ...}")
    group.add_argument("--container", choices=CHOICES, default="auto",
                       help="Where tasks run: auto (podman, else a Docker API, else natively), docker, podman, "
                            "singularity, or none (natively, on the worker)")
    group.add_argument("--allCallOutputs", action="store_true", default=False,
                       help="Accepted for Toil compatibility; the outputs are those the workflow declares")
    group.add_argument("--referenceInputs", action="store_true", default=False,
                       help="Accepted for Toil compatibility: inputs are always copied into the job store")
    group.add_argument("--version", action="store_true", default=False, help="Print the version and exit")
    add_toil_options(parser, jobstore_as_flag=True)
    return parser


def version() -> str:
    versions = importlib.metadata.version("toilray"), importlib.metadata.version("miniwdl")
    return "toilray-wdl-runner {} (miniwdl {})".format(*versions)


def _position(error: Any) -> str:
    pos = getattr(error, "pos", None)
    if pos is None:
        return ""
    return f"{pos.uri or pos.abspath}:{pos.line}:{pos.column}: "


def _first_line(error: BaseException) -> str:
    """miniwdl's parser lists every token it would have accepted on the lines after the first."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


_WEB = ("http://", "https://")
_FETCH_TIMEOUT_S = 60


async def _read_source(uri: str, path: list[str], importer: Any) -> Any:
    """miniwdl's reading of a document, plus ``http(s)`` URLs (miniwdl's library reads only
    files); an import relative to a document read from a URL is resolved against that URL."""
    import urllib.parse
    import urllib.request

    import WDL

    base = importer.pos.abspath if importer is not None else ""
    if not uri.startswith(_WEB) and base.startswith(_WEB) and not os.path.isabs(uri):
        uri = urllib.parse.urljoin(base, uri)
    if not uri.startswith(_WEB):
        return await WDL.read_source_default(uri, path, importer)
    with urllib.request.urlopen(uri, timeout=_FETCH_TIMEOUT_S) as response:
        text = response.read().decode()
    return WDL.ReadSourceResult(source_text=text, abspath=uri)


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def load_document(uri: str) -> Any:
    """The typechecked document; a WDLInputError with file:line:col for a syntax, type or import error."""
    import WDL

    from toilray.wdl import parsers

    parsers.keep_on_disk()
    if "://" not in uri and not os.path.exists(uri):
        raise WDLInputError(f"WDL file not found: {uri}")
    try:
        return WDL.load(uri, [os.path.dirname(os.path.abspath(uri))] if "://" not in uri else [],
                        read_source=_read_source)
    except WDL.Error.MultipleValidationErrors as exc:
        first = exc.exceptions[0]
        raise WDLInputError(f"{_position(first)}{_first_line(first)} ({len(exc.exceptions)} errors)") from None
    except WDL.Error.ImportError as exc:
        cause = _root_cause(exc)
        why = "" if cause is exc else f": {_first_line(cause) if str(cause) else type(cause).__name__}"
        raise WDLInputError(f"{_position(exc)}{_first_line(exc)}{why}") from None
    except (WDL.Error.SyntaxError, WDL.Error.ValidationError) as exc:
        raise WDLInputError(f"{_position(exc)}{_first_line(exc)}") from None
    except OSError as exc:
        raise WDLInputError(f"Cannot read {uri}: {exc}") from None


def read_inputs(path: str | None, workflow: Any) -> Any:
    """The workflow's inputs as miniwdl values; a WDLInputError naming what is wrong."""
    import WDL

    data: Any = {}
    if path is not None:
        try:
            with open(path) as stream:
                data = json.load(stream)
        except OSError as exc:
            raise WDLInputError(f"Cannot read the inputs file {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise WDLInputError(f"The inputs file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WDLInputError(f"The inputs file {path} holds a JSON {type(data).__name__}, not an object")
    try:
        return WDL.values_from_json(data, workflow.available_inputs, workflow.required_inputs,
                                    namespace=workflow.name)
    except WDL.Error.InputError as exc:
        raise WDLInputError(f"Bad input: {exc}") from None
    except WDL.Error.RuntimeError as exc:
        raise WDLInputError(f"Bad input: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv:
        print(version())
        return 0
    args = parser.parse_args(argv)
    if not any(arg.startswith("--retryCount") for arg in argv):
        # A task's own maxRetries (miniwdl's, in the worker) says how often it is tried again.
        args.retryCount = 0
    if args.inputs_file and args.inputs_positional:
        parser.error("give the inputs file once: either INPUTS.json or -i")
    if args.restart and args.jobStore is None:
        parser.error("--restart needs the --jobStore of the run to resume")
    inputs_path = args.inputs_file or args.inputs_positional

    from toilray.cluster import warm_up
    from toilray.wdl.backend import choose
    from toilray.wdl.taskjob import warm_worker

    backend = choose(args.container)
    connection = warm_up(args.rayAddress, args.rayConnectTimeout, args.logLevel, embedded_ray(args.embeddedRay),
                         args.localRayIdleTimeout, functools.partial(warm_worker, backend))
    try:
        return _run(args, inputs_path, backend)
    finally:
        if connection is not None:
            connection.shutdown()


def _run(args: argparse.Namespace, inputs_path: str | None, backend: TaskBackend) -> int:
    import WDL

    from toilray.common import Toil
    from toilray.wdl import files
    from toilray.wdl.driver import STATE_LOGGER, WDLJobSource
    from toilray.wdl.taskjob import save_document

    document = load_document(args.wdl)
    workflow = document.workflow
    if workflow is None:
        raise WDLInputError(f"{args.wdl} holds no workflow")
    inputs = read_inputs(inputs_path, workflow)
    base_dir = os.getcwd()
    if not args.restart:
        try:
            files.check_inputs(inputs, base_dir)
        except files.WDLInputFileError as exc:
            raise WDLInputError(str(exc)) from None
    if str(args.logLevel).upper() != "DEBUG":
        logging.getLogger(STATE_LOGGER).setLevel(logging.WARNING)
    made_dir = None
    if args.jobStore is None:
        made_dir = tempfile.mkdtemp(prefix="toilray-wdl-")
        args.jobStore = "file:" + os.path.join(made_dir, "jobstore")
    output = results_stream()
    uri = args.wdl if "://" in args.wdl else os.path.abspath(args.wdl)
    try:
        # The leader's own scratch (files its expressions read or write); what outlives the run is in the store.
        with tempfile.TemporaryDirectory(prefix="toilray-wdl-leader-") as scratch, Toil(args) as toil:
            store = toil.jobStore
            config = toil.config
            assert config is not None
            if args.restart:
                stored = json.loads(store.read_shared(INPUTS_FILE))
                inputs = WDL.values_from_json(stored, workflow.available_inputs)
            else:
                inputs = files.import_inputs(store, inputs, base_dir)
                store.write_shared(INPUTS_FILE, json.dumps(WDL.values_to_json(inputs)).encode())
            source = WDLJobSource(uri, save_document(store, document), workflow, inputs, store, backend,
                                  config.defaults, scratch)
            toil.drive(source)
            if source.error is not None:
                raise source.error
            if source.failed or source.outputs is None:
                raise FailedJobsException(store.locator, ["(the workflow did not finish)"])
            directory = os.path.abspath(args.outputDirectory or os.getcwd())
            os.makedirs(directory, exist_ok=True)
            outputs = files.export_outputs(store, source.outputs, directory)
        result = WDL.values_to_json(outputs, namespace=workflow.name)
        if args.outputDialect == "miniwdl":
            result = {"dir": directory, "outputs": result}
        text = json.dumps(result, indent=2)
        if args.outputFile:
            # Whole or absent: a reader (the WES server) takes the file's presence as done.
            with AtomicFileCreate(args.outputFile) as tmp_path, open(tmp_path, "w") as stream:
                stream.write(text + "\n")
        output.write(text + "\n")
        return 0
    finally:
        output.close()
        if made_dir is not None and os.path.isdir(made_dir) and not os.listdir(made_dir):
            os.rmdir(made_dir)


def preload() -> None:
    """What a run imports and sets up before its work, done ahead in a fork server (``toilray.forkserver``)."""
    import WDL

    import toilray.cluster
    import toilray.common
    import toilray.leader
    import toilray.wdl.backend
    import toilray.wdl.driver
    import toilray.wdl.files
    import toilray.wdl.taskjob
    import toilray.worker  # noqa: F401  (imported for the side effect: a warm process)
    from toilray.wdl import parsers

    parsers.keep_on_disk()
    for header in ("", "version 1.0\n", "version 1.1\n"):
        # miniwdl builds a version's parser on its first document (read from disk: see parsers).
        WDL.parse_document(header + "workflow w {}\n")
    make_parser()


def run() -> None:
    """The ``toilray-wdl-runner`` command: ``main``, then a quick exit (see the CWL runner's)."""
    from toilray import forkserver

    forkserver.run_forked("toilray.wdl.main")
    try:
        status = main()
    except (Exception, KeyboardInterrupt) as exc:
        reported = report(exc)
        if reported is None:
            raise
        status = reported
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    run()
