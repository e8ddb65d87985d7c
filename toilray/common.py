"""``Toil``, the context manager that runs a workflow (``Config``, its resolved options, lives
in ``toilray.config``)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import logging.handlers
import os
import shutil
import sys
import uuid
from argparse import Namespace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from toilray import deployment, local_ray, ray_choice, serialize
from toilray.callCache import CallCache
from toilray.config import Config
from toilray.deferred import run_orphaned
from toilray.exceptions import (
    FailedJobsException,
    JobException,
    JobStoreNotSharedError,
    NoSuchJobStoreException,
    ToilContextManagerException,
    ToilrayError,
    WorkflowInterruptedException,
    WorkflowKilledException,
    report,
)
from toilray.fileStores.cache import remove_cache
from toilray.job import Job, make_specs
from toilray.jobStores.jobStore import JobStore
from toilray.jobStores.storage import LeaderLock
from toilray.lib import urls
from toilray.options import NO_EFFECT_ON_RAY, REPLACED_OPTIONS, clean_applies
from toilray.protocol import JobSpec, NodeDirs
from toilray.realtimeLogger import LEADER_LOGGER_NAME

if TYPE_CHECKING:
    from toilray.cluster import RayConnection
    from toilray.leader import JobSource

__all__ = ["Config", "Toil", "ToilContextManagerException"]

logger = logging.getLogger("toilray")


def _code_location() -> tuple[str | None, str | None, list[str]]:
    """The importable name of the workflow script, its code root (the directory that holds the
    script, or the root of the package hierarchy of a module run with ``python -m``: what is
    auto-deployed, ``toilray.deployment``), and the paths workers need to import it.

    Workers get the leader's whole ``sys.path`` (absolute), so that the script, modules
    beside it and packages run with ``python -m`` import there without being installed.
    """
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is None or not main_file:
        return None, None, paths
    main_file = os.path.abspath(main_file)
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name and spec_name != "__main__":
        root = os.path.dirname(main_file)
        for _ in range(spec_name.count(".")):
            root = os.path.dirname(root)
        return spec_name, root, [root, *paths]
    stem = os.path.splitext(os.path.basename(main_file))[0]
    script_dir = os.path.dirname(main_file)
    if not stem.isidentifier():
        # Not importable by name: its functions travel by value (and restarts reuse that code).
        return None, script_dir, [script_dir, *paths]
    return stem, script_dir, [script_dir, *paths]


class _UncaughtToilrayErrors:
    """Report an uncaught toilray error (or a Ctrl-C) as ``toilray`` does: one line, and the
    exit status of ``exit_status``.

    Python exits with status 1 after any uncaught exception, whatever the hook does, so the
    status is set by an exit handler registered with the hook: registered before Ray is
    imported, it runs after Ray's own exit handlers, last.
    """

    def __init__(self) -> None:
        self._previous = sys.excepthook
        self._status: int | None = None
        atexit.register(self._exit)

    def __call__(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        status = report(value)
        if status is None:
            self._previous(kind, value, tb)
        self._status = status

    def _exit(self) -> None:
        if self._status is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self._status)


def _configure_logging(config: Config) -> list[logging.Handler]:
    """Handlers (stderr and --logFile) for toilray's own logger and for the one that shows the
    jobs' RealtimeLogger messages, all at the workflow's level, and the root logger at that
    level too, as Toil sets it. The realtime messages go on to the root logger's handlers, as
    Toil's do; toilray's own records do not (a script's root handler would show them twice).
    When the script gave the root logger handlers (Toil's ``setLoggingFromOptions`` does), the
    realtime messages are shown by those alone, again so that none is shown twice."""
    fmt = logging.Formatter("[%(asctime)s] [%(levelname).1s] [%(name)s] %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.logFile:
        if config.rotatingLogging:
            handlers.append(logging.handlers.RotatingFileHandler(
                config.logFile, maxBytes=max(1, config.maxLogFileSize), backupCount=1))
        else:
            handlers.append(logging.FileHandler(config.logFile))
    realtime = logging.getLogger(LEADER_LOGGER_NAME)
    console_for_realtime = not logging.getLogger().handlers
    for index, handler in enumerate(handlers):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
        if index > 0 or console_for_realtime:
            realtime.addHandler(handler)
    for configured in (logger, realtime):
        configured.setLevel(config.logLevel)
    logger.propagate = False
    logging.getLogger().setLevel(config.logLevel)
    return handlers


class Toil:
    """Runs a workflow: ``with Toil(options) as toil: toil.start(rootJob)``."""

    def __init__(self, options: Namespace) -> None:
        self.options = options
        self.config: Config | None = None
        self._jobStore: JobStore | None = None
        self._lock: LeaderLock | None = None
        self._handlers: list[logging.Handler] = []
        self._started = False
        self._launch_dir = os.getcwd()
        self._code_root: str | None = None
        if not isinstance(sys.excepthook, _UncaughtToilrayErrors):
            sys.excepthook = _UncaughtToilrayErrors()

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Toil:
        config = Config.from_options(self.options)
        self.config = config
        self._handlers = _configure_logging(config)
        for name in config.ignoredOptions:
            logger.warning("options.%s has no effect in toilray: %s", name,
                           REPLACED_OPTIONS.get(name) or NO_EFFECT_ON_RAY[name])
        try:
            store = JobStore(config.jobStoreLocator,
                             verify_checksums=not config.disableJobStoreChecksumVerification)
            store.locator = config.jobStore
            if config.restart:
                if not store.exists():
                    raise NoSuchJobStoreException(config.jobStore, "nothing to restart; run without --restart")
            else:
                store.initialize()
            self._lock = store.lock_leader()
            # A kill request left by an earlier run is void; one made from now on (while Ray
            # starts, say) stops this run.
            store.clear_kill()
            store.write_config(config)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._remove_log_handlers()
            raise
        self._jobStore = store
        return self

    def _remove_log_handlers(self) -> None:
        for handler in self._handlers:
            for configured in (logger, logging.getLogger(LEADER_LOGGER_NAME)):
                configured.removeHandler(handler)
            handler.close()
        self._handlers = []

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        store, self._jobStore = self._jobStore, None
        try:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            succeeded = kind is None
            if store is not None and self.config is not None:
                if clean_applies(self.config.clean, succeeded) or (not succeeded and not store.is_started()):
                    # A workflow that never started leaves nothing to resume: no store is kept.
                    store.destroy()
                elif not succeeded and isinstance(value, ToilrayError) and not isinstance(
                        value, FailedJobsException | WorkflowKilledException):
                    # Those two say how to resume; other errors of a started workflow do not.
                    logger.info("The job store %s was kept; fix the problem and run the same command with "
                                "--restart", self.config.jobStore)
        finally:
            self._remove_log_handlers()

    # -- running -----------------------------------------------------------------------------

    @property
    def jobStore(self) -> JobStore:
        """The open job store (front ends keep their own records in it); only inside the ``with``,
        so start, restart and file imports and exports outside it raise as in Toil."""
        if self._jobStore is None:
            raise ToilContextManagerException()
        return self._jobStore

    def _open_run(self) -> tuple[JobStore, Config, str | None, list[str]]:
        """Checks common to every way of running; where the workflow's code is."""
        store = self.jobStore
        assert self.config is not None
        if self._started:
            raise JobException("A workflow was already started in this job store")
        module, self._code_root, paths = _code_location()
        serialize.set_main_module_name(module, is_leader=True)
        serialize.set_main_definitions(serialize.capture_main_definitions())
        self._started = True
        return store, self.config, module, paths

    def _workflow_meta(self, config: Config, root_id: str | None, result_id: str | None, module: str | None,
                       paths: list[str]) -> dict[str, Any]:
        """What workflow.json records: enough for a restart, debug-job and stats to go on."""
        return {"workflowID": uuid.uuid4().hex, "rootJobID": root_id, "resultJobID": result_id,
                "mainModule": module, "codePaths": paths, "launchDir": self._launch_dir,
                "defaults": config.defaults.to_json(), "defaultCores": config.defaults.cores,
                "defaultMemory": config.defaults.memory, "maxCores": config.maxCores}

    def start(self, rootJob: Job) -> Any:
        """Run a new workflow from ``rootJob``; return its (fully resolved) return value."""
        if self.config is not None and self.config.restart:
            raise JobException("This Toil was opened with --restart: call restart(), not start()")
        if not isinstance(rootJob, Job):
            raise JobException(f"start() needs a Job, not {type(rootJob).__name__}")
        rootJob.checkJobGraphForDeadlocks()
        _, config, module, paths = self._open_run()
        specs = make_specs(rootJob, config.defaults)
        # start() returns what rootJob.rv() promises: for an EncapsulatedJob, its inner job's value.
        result_id = rootJob.rv()._job_id
        meta = self._workflow_meta(config, rootJob.jobStoreID, result_id, module, paths)
        return self._run(specs, result_id, module, paths, restarting=False, start_meta=meta)

    def restart(self) -> Any:
        """Resume the workflow in the job store; finished jobs are not run again."""
        store, _, module, paths = self._open_run()
        return self._run(store.initial_specs(), store.meta()["resultJobID"], module, paths, restarting=True)

    def drive(self, source: JobSource) -> None:
        """Run the jobs ``source`` hands out as the run goes (how the CWL runner runs steps).

        A new store records no initial jobs; with --restart, jobs that committed before are
        not run again when the source hands out the same job IDs.
        """
        _, config, module, paths = self._open_run()
        meta = None if config.restart else self._workflow_meta(config, None, None, module, paths)
        self._run([], None, module, paths, restarting=config.restart, source=source, start_meta=meta)

    def _run(self, specs: list[JobSpec], result_id: str | None, module: str | None, paths: list[str],
             restarting: bool, source: JobSource | None = None, start_meta: dict[str, Any] | None = None) -> Any:
        """Connect to Ray, record the start of a new workflow (``start_meta``), run the leader.

        The store holds a workflow only once Ray is there to run it: an error before that
        (a bad address, a job that cannot be pickled) leaves no store to --restart.
        """
        config = self.config
        assert config is not None
        store = self.jobStore
        kind = ray_choice.choose(config.rayAddress, config.embeddedRay, config.elastic is not None).kind
        with local_ray.starting_ahead(config.localRayIdleTimeout) if kind == "managed" else contextlib.nullcontext():
            # Ray and the leader load only when a workflow runs: a script's option mistakes stay quick.
            from toilray.cluster import RayConnection
            from toilray.leader import Leader
            from toilray.realtimeLogger import RealtimeLogServer
            from toilray.run_reports import RunReports

            shipped = deployment.workflow_modules(self._code_root) \
                if kind == "address" and not config.disableAutoDeployment else []
            connection = RayConnection(config.rayAddress, config.rayConnectTimeout, config.logLevel,
                                       config.embeddedRay, config.localRayIdleTimeout, shipped, config.elastic)
        if connection.shipped_code:
            # Every worker imports the shipped copy, also where the original is at hand.
            paths = [path for path in paths if path != self._code_root]
        log_server = None
        try:
            if config.callCache is not None:
                # Opened here first, so that an unusable cache stops the run before any job.
                CallCache(config.callCache)
            if start_meta is not None:
                store.write_start(start_meta, specs)
            if connection.on_cluster:
                self._check_store_is_shared(connection)
            log_server = RealtimeLogServer(connection.node_ip()) if config.realTimeLogging else None
            context = config.worker_context(store.meta()["workflowID"], self._launch_dir, paths, module,
                                            log_server.address if log_server else None,
                                            None if connection.workers_inherit_environment else dict(os.environ),
                                            serialize.main_definitions())
            leader = Leader(store, connection, context, config.leader_limits(),
                            RunReports(store, config.report_options()))
            succeeded = False
            try:
                result = leader.run(specs, result_id, restarting, source)
                succeeded = True
            finally:
                self._clean_node_dirs(context.dirs, succeeded)
            cached = "" if config.callCache is None else (
                f" ({leader.cache_hits} taken from the call cache, {leader.cache_misses} not found in it)")
            logger.info("Workflow finished: %d job(s) run%s", leader.jobs_run, cached)
            return result
        except KeyboardInterrupt:
            raise WorkflowInterruptedException(config.jobStore) from None
        finally:
            if log_server is not None:
                log_server.close()
            connection.shutdown()

    def _check_store_is_shared(self, connection: RayConnection) -> None:
        """Fail at once when a ``file:`` store is not on a file system every node sees."""
        from toilray.worker import sees_workflow

        assert self.config is not None
        locator = self.config.jobStoreLocator
        if not locator.startswith("file:"):
            return
        blind = connection.nodes_where_false(sees_workflow, locator, self.jobStore.meta()["workflowID"])
        if blind:
            raise JobStoreNotSharedError(
                f"The job store {self.config.jobStore} is not visible on node(s) {', '.join(blind)} of the Ray "
                "cluster: a file: job store must be on a file system every node sees at the same path; without "
                "one, use an s3:// or gs:// job store")

    def _clean_node_dirs(self, dirs: NodeDirs, succeeded: bool) -> None:
        """Run deferred functions left by killed attempts, then remove this node's scratch."""
        assert self.config is not None
        run_orphaned(dirs.deferred, everything=True)
        remove_cache(dirs.cache)
        if clean_applies(self.config.cleanWorkDir, succeeded):
            shutil.rmtree(dirs.workflow, ignore_errors=True)

    # -- files -------------------------------------------------------------------------------

    def importFile(self, srcUrl: str, sharedFileName: str | None = None, symlink: bool = True) -> Any:
        return urls.import_url(self.jobStore, srcUrl, self._launch_dir, sharedFileName)

    def exportFile(self, jobStoreFileID: str, dstUrl: str) -> None:
        urls.export_url(self.jobStore, jobStoreFileID, dstUrl, self._launch_dir)

    import_file = importFile
    export_file = exportFile

    @staticmethod
    def normalize_uri(uri: str, check_existence: bool = False) -> str:
        return urls.normalize_uri(uri, check_existence)

    @staticmethod
    def parseLocator(locator: str) -> tuple[str, str]:
        """A locator's (type, rest), as Toil splits it: a path (starting with '/' or '.', or
        without ':') is 'file'; anything else splits at its first ':'. Types are not checked."""
        if locator[0] in "/." or ":" not in locator:
            return "file", locator
        name, rest = locator.split(":", 1)
        return name, rest

    @staticmethod
    def buildLocator(name: str, rest: str) -> str:
        if ":" in name:
            raise ValueError(f"Can't have a ':' in the name: '{name}'.")
        return f"{name}:{rest}"

    @staticmethod
    def getJobStore(locator: str) -> JobStore:
        return JobStore(locator)
