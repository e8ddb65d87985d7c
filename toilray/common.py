"""``Toil``, the context manager that runs a workflow, and ``Config``, its resolved options."""

from __future__ import annotations

import logging
import logging.handlers
import os
import shutil
import sys
import tempfile
import uuid
from argparse import ArgumentTypeError, Namespace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from toilray import serialize
from toilray.exceptions import BadOptionError, JobException, NoSuchJobStoreException, ToilrayError
from toilray.job import Job, make_specs
from toilray.jobStores.jobStore import JobStore, parse_locator
from toilray.jobStores.storage import LeaderLock
from toilray.lib import urls
from toilray.options import REPLACED_OPTIONS, batch_system_type, get_default_options

if TYPE_CHECKING:
    from toilray.leader import JobSource
from toilray.requirements import (
    Requirements,
    parse_accelerators,
    parse_cores,
    parse_memory,
    parse_preemptible,
)

logger = logging.getLogger("toilray")

_defaults: Requirements | None = None


def current_defaults() -> Requirements:
    """Default requirements of the running workflow, or Toil's defaults outside of one."""
    global _defaults
    if _defaults is None:
        _defaults = Config(get_default_options("unused")).defaults
    return _defaults


def _set_env(entries: list[str]) -> dict[str, str]:
    env = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not name:
            raise BadOptionError(f"--setEnv needs NAME or NAME=VALUE, not {entry!r}")
        if sep:
            env[name] = value
        elif name in os.environ:
            env[name] = os.environ[name]
    return env


class Config:
    """Options resolved into the values toilray runs with (defaults filled in, checked)."""

    def __init__(self, options: Namespace) -> None:
        for name in REPLACED_OPTIONS:
            if getattr(options, name, None) not in (None, False):
                raise BadOptionError(f"--{name} is not used by toilray: {REPLACED_OPTIONS[name]}")
        try:
            batch_system_type(str(options.batchSystem))
        except ArgumentTypeError as exc:
            raise BadOptionError(f"--batchSystem {options.batchSystem}: {exc}") from None
        self.options = options
        self.jobStore: str = options.jobStore
        if not self.jobStore:
            raise BadOptionError("No job store given (pass a locator such as file:my-store or a path)")
        kind, rest = parse_locator(self.jobStore)
        # Workers run in other directories: a relative path must not change meaning there.
        self.jobStoreLocator = f"file:{os.path.abspath(os.path.expanduser(rest))}" if kind == "file" else self.jobStore
        self.restart: bool = bool(options.restart)
        self.stats: bool = bool(options.stats)
        clean = str(options.clean) if options.clean else ("never" if self.stats else "onSuccess")
        self.clean = _normalise_clean(clean, "--clean")
        if self.stats:
            self.clean = "never"
        self.cleanWorkDir = _normalise_clean(str(options.cleanWorkDir), "--cleanWorkDir")
        self.workDir: str = os.path.abspath(options.workDir or tempfile.gettempdir())
        if not os.path.isdir(self.workDir):
            raise BadOptionError(f"--workDir {self.workDir} is not an existing directory")
        level = str(options.logLevel).upper()
        self.logLevel = {"OFF": "CRITICAL", "WARN": "WARNING"}.get(level, level)
        if self.logLevel not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
            raise BadOptionError(f"Unknown log level {options.logLevel!r}")
        self.retryCount: int = int(options.retryCount)
        if self.retryCount < 0:
            raise BadOptionError("--retryCount cannot be negative")
        # Scripts may set options in code after parsing, as strings ("4G") or numbers.
        try:
            self.defaults = Requirements(
                cores=parse_cores(options.defaultCores),
                memory=parse_memory(options.defaultMemory, "--defaultMemory"),
                disk=parse_memory(options.defaultDisk, "--defaultDisk"),
                accelerators=parse_accelerators(options.defaultAccelerators),
                preemptible=parse_preemptible(options.defaultPreemptible),
            )
            self.maxCores = None if options.maxCores is None else parse_cores(options.maxCores)
            self.maxMemory = None if options.maxMemory is None else parse_memory(options.maxMemory, "--maxMemory")
            self.maxDisk = None if options.maxDisk is None else parse_memory(options.maxDisk, "--maxDisk")
        except ValueError as exc:
            raise BadOptionError(str(exc)) from None
        if options.scale <= 0:
            raise BadOptionError("--scale must be positive")
        self.env = _set_env(list(options.setEnv or []))
        if options.writeLogs is not None and options.writeLogsGzip is not None:
            raise BadOptionError("--writeLogs and --writeLogsGzip conflict: give one of them")
        if self.maxCores is not None and self.maxCores < self.defaults.cores:
            raise BadOptionError(
                f"--maxCores {self.maxCores:g} is less than --defaultCores {self.defaults.cores:g}: "
                "no job with default requirements could ever run"
            )

    def __getattr__(self, name: str) -> Any:
        # Every option not resolved above reads straight from the parsed namespace.
        if name == "options":
            raise AttributeError(name)
        return getattr(self.options, name)


def _normalise_clean(value: str, flag: str) -> str:
    for choice in ("always", "onError", "never", "onSuccess"):
        if value.lower() == choice.lower():
            return choice
    raise BadOptionError(f"{flag} must be always, onError, never or onSuccess, not {value!r}")


def _code_location() -> tuple[str | None, list[str]]:
    """The importable name of the workflow script and the paths workers need to import it.

    Workers get the leader's whole ``sys.path`` (absolute), so that the script, modules
    beside it and packages run with ``python -m`` import there without being installed.
    """
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is None or not main_file:
        return None, paths
    main_file = os.path.abspath(main_file)
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name and spec_name != "__main__":
        root = os.path.dirname(main_file)
        for _ in range(spec_name.count(".")):
            root = os.path.dirname(root)
        return spec_name, [root, *paths]
    stem = os.path.splitext(os.path.basename(main_file))[0]
    script_dir = os.path.dirname(main_file)
    if not stem.isidentifier():
        # Not importable by name: its functions travel by value (and restarts reuse that code).
        return None, [script_dir, *paths]
    return stem, [script_dir, *paths]


class _UncaughtToilrayErrors:
    """Print an uncaught toilray error as one line, not a traceback, and exit non-zero."""

    def __init__(self) -> None:
        self._previous = sys.excepthook

    def __call__(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if isinstance(value, ToilrayError):
            print(f"toilray: error: {value}", file=sys.stderr)
            return
        self._previous(kind, value, tb)


def _configure_logging(config: Config) -> list[logging.Handler]:
    fmt = logging.Formatter("[%(asctime)s] [%(levelname).1s] [%(name)s] %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.logFile:
        if config.rotatingLogging:
            handlers.append(logging.handlers.RotatingFileHandler(
                config.logFile, maxBytes=max(1, config.maxLogFileSize), backupCount=1))
        else:
            handlers.append(logging.FileHandler(config.logFile))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.setLevel(config.logLevel)
    logger.propagate = False
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
        self._outer_defaults: Requirements | None = None

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Toil:
        global _defaults
        config = Config(self.options)
        self.config = config
        self._outer_defaults = _defaults
        _defaults = config.defaults
        self._handlers = _configure_logging(config)
        if not isinstance(sys.excepthook, _UncaughtToilrayErrors):
            sys.excepthook = _UncaughtToilrayErrors()
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
        except BaseException:
            self._remove_log_handlers()
            raise
        self._jobStore = store
        return self

    def _remove_log_handlers(self) -> None:
        for handler in self._handlers:
            logger.removeHandler(handler)
            handler.close()
        self._handlers = []

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _defaults
        try:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            clean = self.config.clean if self.config else "never"
            failed = kind is not None
            if self._jobStore is not None and (
                clean == "always" or (clean == "onSuccess" and not failed) or (clean == "onError" and failed)
            ):
                self._jobStore.destroy()
            elif failed and self._jobStore is not None and isinstance(value, ToilrayError):
                logger.info("The job store %s was kept; fix the problem and use --restart", self.config.jobStore)
        finally:
            self._remove_log_handlers()
            _defaults = self._outer_defaults

    # -- running -----------------------------------------------------------------------------

    @property
    def _store(self) -> JobStore:
        if self._jobStore is None or self.config is None:
            raise JobException("Use Toil as a context manager: 'with Toil(options) as toil:'")
        return self._jobStore

    def start(self, rootJob: Job) -> Any:
        """Run a new workflow from ``rootJob``; return its (fully resolved) return value."""
        store = self._store
        assert self.config is not None
        if self.config.restart:
            raise JobException("This Toil was opened with --restart: call restart(), not start()")
        if self._started:
            raise JobException("A workflow was already started in this job store")
        if not isinstance(rootJob, Job):
            raise JobException(f"start() needs a Job, not {type(rootJob).__name__}")
        rootJob.checkJobGraphForDeadlocks()
        module, paths = _code_location()
        serialize.set_main_module_name(module, is_leader=True)
        specs = make_specs(rootJob, self.config.defaults)
        # start() returns what rootJob.rv() promises: for an EncapsulatedJob, its inner job's value.
        result_id = rootJob.rv()._job_id
        meta = {"workflowID": uuid.uuid4().hex, "rootJobID": rootJob.jobStoreID, "resultJobID": result_id,
                "mainModule": module, "codePaths": paths, "launchDir": self._launch_dir,
                "defaultCores": self.config.defaults.cores, "defaultMemory": self.config.defaults.memory,
                "maxCores": self.config.maxCores}
        store.write_start(meta, specs)
        self._started = True
        return self._run(specs, result_id, module, paths, restarting=False)

    def restart(self) -> Any:
        """Resume the workflow in the job store; finished jobs are not run again."""
        store = self._store
        assert self.config is not None
        module, paths = _code_location()
        serialize.set_main_module_name(module, is_leader=True)
        meta = store.meta()
        self._started = True
        return self._run(store.initial_specs(), meta["resultJobID"], module, paths, restarting=True)

    def drive(self, source: JobSource) -> None:
        """Run the jobs ``source`` hands out as the run goes (how the CWL runner runs steps).

        A new store records no initial jobs; with --restart, jobs that committed before are
        not run again when the source hands out the same job IDs.
        """
        store = self._store
        assert self.config is not None
        if self._started:
            raise JobException("A workflow was already started in this job store")
        module, paths = _code_location()
        serialize.set_main_module_name(module, is_leader=True)
        if not self.config.restart:
            meta = {"workflowID": uuid.uuid4().hex, "rootJobID": None, "resultJobID": None,
                    "mainModule": module, "codePaths": paths, "launchDir": self._launch_dir,
                    "defaultCores": self.config.defaults.cores, "defaultMemory": self.config.defaults.memory,
                    "maxCores": self.config.maxCores}
            store.write_start(meta, [])
        self._started = True
        self._run([], None, module, paths, restarting=bool(self.config.restart), source=source)

    def _run(self, specs: list[Any], result_id: str | None, module: str | None, paths: list[str],
             restarting: bool, source: JobSource | None = None) -> Any:
        from toilray.cluster import RayConnection
        from toilray.leader import Leader, LeaderLimits
        from toilray.realtimeLogger import RealtimeLogServer
        from toilray.run_reports import ReportOptions, RunReports
        from toilray.worker import WorkerContext

        config = self.config
        assert config is not None
        store = self._store
        logs = config.writeLogsGzip if config.writeLogsGzip is not None else config.writeLogs
        logs_dir = os.path.abspath(logs) if logs is not None else None
        connection = RayConnection(config.rayAddress)
        log_server = RealtimeLogServer(connection.node_ip()) if config.realTimeLogging else None
        try:
            context = WorkerContext(
                locator=config.jobStoreLocator,
                workflow_id=store.meta()["workflowID"],
                work_dir=config.workDir,
                launch_dir=self._launch_dir,
                code_paths=paths,
                main_module=module,
                defaults=config.defaults,
                env=config.env,
                max_log_size=int(config.maxLogFileSize),
                clean_work_dir=config.cleanWorkDir,
                bad_worker=float(config.badWorker),
                bad_worker_interval=float(config.badWorkerFailInterval),
                log_level=config.logLevel,
                capture_output=not config.disableWorkerOutputCapture,
                caching=config.caching is not False,
                chaining=not config.disableChaining and config.maxJobDuration is None,
                return_all_logs=logs_dir is not None and bool(config.writeLogsFromAllJobs),
                realtime_log_address=log_server.address if log_server else None,
                verify_checksums=not config.disableJobStoreChecksumVerification,
            )
            limits = LeaderLimits(
                retry_count=config.retryCount,
                max_cores=config.maxCores,
                max_memory=config.maxMemory,
                max_disk=config.maxDisk,
                scale=float(config.scale),
                default_memory=config.defaults.memory,
                batching=not config.disableChaining,
                max_job_duration=config.maxJobDuration,
                kill_polling_interval=float(config.kill_polling_interval),
                max_service_jobs=int(config.maxServiceJobs),
                service_poll_interval=float(config.servicePollingInterval),
                deadlock_wait=float(config.deadlockWait),
                double_memory=bool(config.doubleMem),
                unlimited_preemptible_retries=bool(config.enableUnlimitedPreemptibleRetries),
            )
            reports = RunReports(store, ReportOptions(
                record_stats=config.stats,
                write_logs_dir=logs_dir,
                write_logs_gzip=config.writeLogsGzip is not None,
                write_logs_from_all_jobs=bool(config.writeLogsFromAllJobs),
                show_progress=not config.disableProgress,
            ))
            leader = Leader(store, connection, context, limits, reports)
            succeeded = False
            try:
                result = leader.run(specs, result_id, restarting, source)
                succeeded = True
            finally:
                self._clean_node_dirs(context.workflow_id, succeeded)
            logger.info("Workflow finished: %d job(s) run", leader.jobs_run)
            return result
        finally:
            if log_server is not None:
                log_server.close()
            connection.shutdown()

    def _clean_node_dirs(self, workflow_id: str, succeeded: bool) -> None:
        """Run deferred functions left by killed attempts, then remove this node's scratch."""
        from toilray.deferred import run_orphaned
        from toilray.fileStores.cache import remove_cache
        from toilray.worker import cache_dir, deferred_dir, workflow_dir

        assert self.config is not None
        run_orphaned(deferred_dir(self.config.workDir, workflow_id), everything=True)
        remove_cache(cache_dir(self.config.workDir, workflow_id))
        clean = self.config.cleanWorkDir
        if clean == "always" or (clean == "onSuccess" and succeeded) or (clean == "onError" and not succeeded):
            shutil.rmtree(workflow_dir(self.config.workDir, workflow_id), ignore_errors=True)

    # -- files -------------------------------------------------------------------------------

    def importFile(self, srcUrl: str, sharedFileName: str | None = None, symlink: bool = True) -> Any:
        return urls.import_url(self._store, srcUrl, self._launch_dir, sharedFileName)

    def exportFile(self, jobStoreFileID: str, dstUrl: str) -> None:
        urls.export_url(self._store, jobStoreFileID, dstUrl, self._launch_dir)

    import_file = importFile
    export_file = exportFile

    @staticmethod
    def normalize_uri(uri: str, check_existence: bool = False) -> str:
        return urls.normalize_uri(uri, check_existence)

    @staticmethod
    def getJobStore(locator: str) -> JobStore:
        return JobStore(locator)
