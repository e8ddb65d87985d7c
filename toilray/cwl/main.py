"""``toilray-cwl-runner``: cwltool's command line, with Toil's options, on the toilray engine."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import tempfile

from toilray.exceptions import report
from toilray.lib.processes import results_stream
from toilray.options import add_toil_options, embedded_ray


def make_parser() -> argparse.ArgumentParser:
    from cwltool.argparser import arg_parser

    parser = arg_parser()
    parser.prog = "toilray-cwl-runner"
    parser.description = ("Run a CWL workflow on toilray. Takes cwltool's options and Toil's; the job store "
                          "defaults to a new directory that is removed when the run succeeds.")
    add_toil_options(parser, jobstore_as_flag=True)
    group = parser.add_argument_group("toilray CWL options")
    group.add_argument("--bypass-file-store", action="store_true", default=False,
                       help="Pass files between steps as local paths instead of through the job store "
                            "(needed by InplaceUpdateRequirement; all workers must share a file system)")
    group.add_argument("--disable-streaming", action="store_true", default=False,
                       help="Accepted for Toil compatibility: toilray never streams inputs")
    return parser


def version() -> str:
    """What ``--version`` prints and the run's first log line says: toilray's version, and cwltool's."""
    versions = importlib.metadata.version("toilray"), importlib.metadata.version("cwltool")
    return "toilray-cwl-runner {} (cwltool {})".format(*versions)



def main(argv: list[str] | None = None) -> int:
    import cwltool.main
    from cwltool.context import RuntimeContext
    from cwltool.utils import DEFAULT_TMP_PREFIX

    from toilray.cluster import warm_up
    from toilray.cwl.containers import choose_engine
    from toilray.cwl.executor import ToilrayExecutor, warm_worker
    from toilray.cwl.tooljob import RUNTIME_KEYS

    parser = make_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.version:
        # Answered before Ray is reached.
        print(version())
        return 0
    document = (args.workflow or "").split("#", 1)[0]  # 'wf.cwl#main' names a process inside wf.cwl
    if document and "://" not in document and not os.path.exists(document):
        # cwltool would answer with a traceback.
        parser.exit(2, f"{parser.prog}: error: workflow file not found: {document}\n")
    if args.quiet and not any(arg.startswith("--logLevel") for arg in argv):
        args.logLevel = "WARNING"
    if args.cachedir and not args.callCache:
        # cwltool's --cachedir is the call cache here: results are kept by content, with the file store.
        args.callCache = args.cachedir
    if args.callCache and args.bypass_file_store:
        parser.error("--cachedir (--callCache) keeps results through the job store: it cannot be used with "
                     "--bypass-file-store")
    made_dir = None
    if args.jobStore is None:
        if args.restart:
            parser.error("--restart needs the --jobStore of the run to resume")
        made_dir = tempfile.mkdtemp(prefix="toilray-cwl-")
        args.jobStore = "file:" + os.path.join(made_dir, "jobstore")
    docker_host = choose_engine(args)
    worker_runtime = {key: getattr(args, key) for key in RUNTIME_KEYS if hasattr(args, key)}
    for key in ("tmpdir_prefix", "tmp_outdir_prefix"):
        if worker_runtime.get(key) in (None, DEFAULT_TMP_PREFIX):
            # Each job then works inside its own scratch directory, which toilray cleans up.
            worker_runtime.pop(key, None)
    if docker_host is not None:
        worker_runtime["docker_host"] = docker_host
    if args.preserve_entire_environment:
        worker_runtime["environment"] = dict(os.environ)
    elif args.preserve_environment:
        worker_runtime["environment"] = {name: os.environ[name] for name in args.preserve_environment
                                         if name in os.environ}
    if args.logFile:
        # cwltool's own messages belong in the run's log file too.
        from cwltool.loghandler import _logger as cwltool_logger

        cwltool_logger.addHandler(logging.FileHandler(args.logFile))
    executor = ToilrayExecutor(args, worker_runtime, args.bypass_file_store)
    runtime_context = RuntimeContext(vars(args))
    output = results_stream()
    connection = warm_up(args.rayAddress, args.rayConnectTimeout, args.logLevel, embedded_ray(args.embeddedRay),
                         args.localRayIdleTimeout, warm_worker)
    try:
        return cwltool.main.main(args=args, executor=executor, runtimeContext=runtime_context, stdout=output,
                                 versionfunc=version, custom_schema_callback=lambda: keep_parsed_schemas(args))
    finally:
        output.close()
        if connection is not None:
            connection.shutdown()
        if made_dir is not None and not os.listdir(made_dir):
            # The job store was removed after success (or never made): nothing to keep.
            os.rmdir(made_dir)


def keep_parsed_schemas(args: argparse.Namespace) -> None:
    """cwltool's choice of schemas at a run's start, keeping the standard ones it has parsed already.

    cwltool drops every parsed schema at the start of a run (even to choose the same ones
    again), and parsing them again is a third of a small run's CPU; a fork server's child
    (``toilray.forkserver``) has them parsed already.
    """
    from cwltool.main import setup_schema
    from cwltool.process import custom_schemas, use_standard_schema

    if args.enable_ext:
        setup_schema(args, None)
    else:
        for cwl_version in list(custom_schemas):
            use_standard_schema(cwl_version)


def reported_main(argv: list[str] | None = None) -> int:
    """``main``, with toilray's own errors (and a Ctrl-C) reported as one line: the exit status."""
    try:
        return main(argv)
    except (Exception, KeyboardInterrupt) as exc:
        reported = report(exc)
        if reported is None:
            raise
        return reported


def quick_exit(status: int) -> None:
    """Exit at once with ``status``, once what is buffered is written.

    Everything the run wrote is durable by then; what is left is Ray's driver teardown, which
    costs about a second per run (the local Ray a run started itself was already stopped).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


def preload() -> None:
    """What a run imports and sets up before its work, done ahead in a fork server (``toilray.forkserver``)."""
    import cwltool.main  # noqa: F401  (imported for the side effect: a warm process)
    from cwltool.process import get_schema

    import toilray.cluster
    import toilray.common
    import toilray.cwl.containers
    import toilray.cwl.executor
    import toilray.cwl.tooljob
    import toilray.leader
    import toilray.worker  # noqa: F401

    for cwl_version in ("v1.0", "v1.1", "v1.2"):
        # cwltool keeps each version's schema once parsed: a third of a small run's CPU.
        get_schema(cwl_version)
    make_parser()


def run() -> None:
    """The ``toilray-cwl-runner`` command: ``main``, then a quick exit; in a warm process's fork where one serves."""
    from toilray import forkserver

    forkserver.run_forked("toilray.cwl.main")
    quick_exit(reported_main())


if __name__ == "__main__":
    run()
