"""``Config``: a workflow's options, resolved once into typed values, and the views of them
that the leader, the workers and the run reports take.

Options reach toilray as an argparse namespace that a script may still edit after parsing
(``options.logLevel = "DEBUG"``, ``options.defaultMemory = "4G"``), so they are checked here,
when a run starts, with the same converters the parser uses (``toilray.options``): one rule
for each option, whichever way its value came.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import uuid
from argparse import ArgumentTypeError, Namespace
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from toilray import hpc_schedulers
from toilray.elastic import ElasticSettings, Shape
from toilray.exceptions import BadOptionError, ToilrayError
from toilray.jobStores.jobStore import parse_locator
from toilray.options import (
    ELASTIC_BATCH_SYSTEMS,
    ELASTIC_OPTIONS,
    NO_EFFECT_ON_RAY,
    REPLACED_OPTIONS,
    TUNING_ONLY_OPTIONS,
    batch_system_type,
    embedded_ray,
    parse_clean,
    parse_log_level,
)
from toilray.protocol import WorkerContext
from toilray.requirements import (
    Requirements,
    parse_accelerators,
    parse_cores,
    parse_memory,
    parse_preemptible,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LeaderLimits:
    """What the leader needs to schedule, retry and supervise jobs."""

    retry_count: int
    max_cores: float | None
    max_memory: int | None
    max_disk: int | None
    scale: float
    default_memory: int
    batching: bool
    max_job_duration: float | None
    kill_polling_interval: float
    max_service_jobs: int
    max_preemptible_service_jobs: int
    service_poll_interval: float
    deadlock_wait: float
    double_memory: bool
    unlimited_preemptible_retries: bool
    autoscaling_config: str | None
    preemptible_compensation: float


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """What the run reports record: statistics, per-job log files, the progress line."""

    record_stats: bool
    write_logs_dir: str | None
    write_logs_gzip: bool
    write_logs_from_all_jobs: bool
    show_progress: bool
    status_wait: float
    write_messages: str | None


def _checked(convert: Callable[[Any], T], value: Any, flag: str) -> T:
    try:
        return convert(value)
    except (ArgumentTypeError, ValueError, TypeError) as exc:
        raise BadOptionError(str(exc) if flag in str(exc) else f"{flag}: {exc}") from None


def _memory(value: Any, flag: str) -> int:
    return _checked(lambda v: parse_memory(v, flag), value, flag)


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


def _call_cache_locator(locator: Any) -> str | None:
    """--callCache as workers see it: a path made absolute, an object store URL as given."""
    if not locator:
        return None
    text = os.fspath(locator)
    if text.startswith(("s3://", "gs://")):
        return text
    try:
        kind, rest = parse_locator(text)
    except ToilrayError:
        kind, rest = "", ""
    if kind != "file" or not rest:
        raise BadOptionError(f"--callCache {text}: not a path, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
    return f"file:{os.path.abspath(os.path.expanduser(rest))}"


def _compensation(value: Any) -> float:
    """--preemptibleCompensation, also when a script set it in its code (as a string, say)."""
    try:
        compensation = float(value if value is not None else 0.0)
    except (TypeError, ValueError):
        raise BadOptionError(f"--preemptibleCompensation {value}: not a number") from None
    if not 0.0 <= compensation <= 1.0:
        raise BadOptionError(f"--preemptibleCompensation {value}: must be between 0 and 1")
    return compensation


_DEFAULT_MAX_NODES = 10
_DEFAULT_NODE_IDLE_TIME = 60.0
_DEFAULT_STATE_POLLING_WAIT = 1.0


def _given(options: Namespace, name: str) -> Any:
    value = getattr(options, name, None)
    return None if value is False else value


def _elastic_settings(options: Namespace, batch_system: str) -> ElasticSettings | None:
    """The worker jobs of an elastic HPC run (``toilray.elastic``); None for a run on Ray itself,
    which must not be given their options."""
    if batch_system not in ELASTIC_BATCH_SYSTEMS:
        for name, instead in ELASTIC_OPTIONS.items():
            if _given(options, name) is not None:
                raise BadOptionError(f"--{name} is for --batchSystem slurm, grid_engine or lsf; on Ray: {instead}")
        return None
    scheduler = hpc_schedulers.by_name(batch_system)
    if _given(options, "slurmArgs") and scheduler.name != "slurm":
        raise BadOptionError(f"--slurmArgs is for Slurm; use {scheduler.args_variable} with --batchSystem "
                             f"{batch_system}")

    def number(name: str, convert: Callable[[Any], T], default: T) -> T:
        value = _given(options, name)
        if value is None:
            return default
        converted = _checked(convert, value, f"--{name}")
        if not isinstance(converted, int | float) or converted <= 0:
            raise BadOptionError(f"--{name} must be positive, not {value}")
        return converted

    memory = _given(options, "nodeMemory")
    shape = Shape(cpus=number("nodeCores", int, 1),
                  memory=None if memory is None else _memory(memory, "--nodeMemory"),
                  gpus=number("nodeAccelerators", int, 0))
    return ElasticSettings(
        scheduler=scheduler.name, shape=shape, max_nodes=number("maxNodes", int, _DEFAULT_MAX_NODES),
        idle_time=number("nodeIdleTime", float, _DEFAULT_NODE_IDLE_TIME),
        polling=number("statePollingWait", float, _DEFAULT_STATE_POLLING_WAIT),
        queue=_given(options, "slurmPartition"), time=_given(options, "slurmTime"), qos=_given(options, "slurmQOS"),
        extra_args=(*scheduler.extra_args(os.environ), *shlex.split(_given(options, "slurmArgs") or "")),
        parallel_environment=os.environ.get("TOIL_GRIDENGINE_PE") or None,
        memory_is_product=bool(_given(options, "memoryIsProduct")))


@dataclass(frozen=True, slots=True)
class Config:
    """The options a workflow runs with: defaults filled in, every value checked."""

    jobStore: str
    # The locator workers use: a relative path must not change meaning in their directories.
    jobStoreLocator: str
    restart: bool
    stats: bool
    clean: str
    cleanWorkDir: str
    workDir: str
    logLevel: str
    logFile: str | None
    rotatingLogging: bool
    maxLogFileSize: int
    writeLogs: str | None
    writeLogsGzip: bool
    writeLogsFromAllJobs: bool
    writeMessages: str | None
    realTimeLogging: bool
    rayAddress: str | None
    disableAutoDeployment: bool
    autoscalingConfig: str | None
    preemptibleCompensation: float
    rayConnectTimeout: float
    embeddedRay: bool
    localRayIdleTimeout: float
    retryCount: int
    defaults: Requirements
    maxCores: float | None
    maxMemory: int | None
    maxDisk: int | None
    scale: float
    env: dict[str, str]
    caching: bool
    disableChaining: bool
    maxJobDuration: float | None
    kill_polling_interval: float
    maxServiceJobs: int
    maxPreemptibleServiceJobs: int
    servicePollingInterval: float
    deadlockWait: float
    doubleMem: bool
    enableUnlimitedPreemptibleRetries: bool
    disableWorkerOutputCapture: bool
    disableProgress: bool
    statusWait: float
    disableJobStoreChecksumVerification: bool
    badWorker: float
    badWorkerFailInterval: float
    callCache: str | None = None
    callCacheAllJobs: bool = False
    batchSystem: str = "ray"
    # --batchSystem slurm, grid_engine or lsf: the run's Ray worker nodes are scheduler jobs.
    elastic: ElasticSettings | None = None
    # Tuning options set in the script's code that toilray has no use for (a warning says so).
    ignoredOptions: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: Namespace) -> Config:
        """Resolve and check ``options``; a bad value raises BadOptionError naming the option."""
        ignored = []
        for name in REPLACED_OPTIONS:
            if getattr(options, name, None) not in (None, False):
                if name not in TUNING_ONLY_OPTIONS:
                    raise BadOptionError(f"--{name} is not used by toilray: {REPLACED_OPTIONS[name]}")
                ignored.append(name)
        batch_system = _checked(batch_system_type, str(options.batchSystem), f"--batchSystem {options.batchSystem}")
        elastic = _elastic_settings(options, batch_system)
        if elastic is None:
            ignored += [name for name in NO_EFFECT_ON_RAY if _given(options, name) is not None]
        if elastic is not None and options.rayAddress:
            raise BadOptionError(f"--rayAddress and --batchSystem {batch_system} conflict: the run starts its "
                                 "own Ray head and adds worker nodes as scheduler jobs")
        job_store = os.fspath(options.jobStore) if options.jobStore else options.jobStore
        if not job_store:
            raise BadOptionError("No job store given (pass a locator such as file:my-store or a path)")
        kind, rest = parse_locator(job_store)
        locator = f"file:{os.path.abspath(os.path.expanduser(rest))}" if kind == "file" else job_store
        if options.sseKey and kind != "file":
            raise BadOptionError(
                f"--sseKey is not used by toilray's {kind} job store: it does not encrypt with a key of yours; "
                "turn on the bucket's default encryption instead"
            )
        stats = bool(options.stats)
        clean = "never" if stats else _checked(parse_clean, options.clean or "onSuccess", "--clean")
        work_dir = os.path.abspath(options.workDir or tempfile.gettempdir())
        if not os.path.isdir(work_dir):
            raise BadOptionError(f"--workDir {work_dir} is not an existing directory")
        retry_count = _checked(int, options.retryCount, "--retryCount")
        if retry_count < 0:
            raise BadOptionError("--retryCount cannot be negative")
        defaults = Requirements(
            cores=_checked(parse_cores, options.defaultCores, "--defaultCores"),
            memory=_memory(options.defaultMemory, "--defaultMemory"),
            disk=_memory(options.defaultDisk, "--defaultDisk"),
            accelerators=_checked(parse_accelerators, options.defaultAccelerators, "--defaultAccelerators"),
            preemptible=_checked(parse_preemptible, options.defaultPreemptible, "--defaultPreemptible"),
        )
        max_cores = None if options.maxCores is None else _checked(parse_cores, options.maxCores, "--maxCores")
        if max_cores is not None and max_cores < defaults.cores:
            raise BadOptionError(
                f"--maxCores {max_cores:g} is less than --defaultCores {defaults.cores:g}: "
                "no job with default requirements could ever run"
            )
        scale = _checked(float, options.scale, "--scale")
        if scale <= 0:
            raise BadOptionError("--scale must be positive")
        if options.writeLogs is not None and options.writeLogsGzip is not None:
            raise BadOptionError("--writeLogs and --writeLogsGzip conflict: give one of them")
        logs = options.writeLogsGzip if options.writeLogsGzip is not None else options.writeLogs
        ray_connect_timeout = _checked(float, options.rayConnectTimeout, "--rayConnectTimeout")
        if ray_connect_timeout <= 0:
            raise BadOptionError("--rayConnectTimeout must be positive")
        idle_timeout = _checked(float, options.localRayIdleTimeout, "--localRayIdleTimeout")
        if idle_timeout <= 0:
            raise BadOptionError("--localRayIdleTimeout must be positive")
        return cls(
            jobStore=job_store,
            jobStoreLocator=locator,
            restart=bool(options.restart),
            stats=stats,
            clean=clean,
            cleanWorkDir=_checked(parse_clean, options.cleanWorkDir, "--cleanWorkDir"),
            workDir=work_dir,
            logLevel=_checked(parse_log_level, options.logLevel, "--logLevel"),
            logFile=options.logFile,
            rotatingLogging=bool(options.rotatingLogging),
            maxLogFileSize=_checked(int, options.maxLogFileSize, "--maxLogFileSize"),
            writeLogs=os.path.abspath(logs) if logs is not None else None,
            writeLogsGzip=options.writeLogsGzip is not None,
            writeLogsFromAllJobs=bool(options.writeLogsFromAllJobs),
            writeMessages=os.path.abspath(options.writeMessages) if options.writeMessages else None,
            realTimeLogging=bool(options.realTimeLogging),
            rayAddress=options.rayAddress,
            disableAutoDeployment=bool(options.disableAutoDeployment),
            autoscalingConfig=options.autoscalingConfig,
            preemptibleCompensation=_compensation(getattr(options, "preemptibleCompensation", 0.0)),
            rayConnectTimeout=ray_connect_timeout,
            embeddedRay=embedded_ray(options.embeddedRay),
            localRayIdleTimeout=idle_timeout,
            retryCount=retry_count,
            defaults=defaults,
            maxCores=max_cores,
            maxMemory=None if options.maxMemory is None else _memory(options.maxMemory, "--maxMemory"),
            maxDisk=None if options.maxDisk is None else _memory(options.maxDisk, "--maxDisk"),
            scale=scale,
            env=_set_env(list(options.setEnv or [])),
            caching=options.caching is not False,
            disableChaining=bool(options.disableChaining),
            maxJobDuration=None if options.maxJobDuration is None else float(options.maxJobDuration),
            kill_polling_interval=float(options.kill_polling_interval),
            maxServiceJobs=int(options.maxServiceJobs),
            maxPreemptibleServiceJobs=int(options.maxPreemptibleServiceJobs),
            servicePollingInterval=float(options.servicePollingInterval),
            deadlockWait=float(options.deadlockWait),
            doubleMem=bool(options.doubleMem),
            enableUnlimitedPreemptibleRetries=bool(options.enableUnlimitedPreemptibleRetries),
            disableWorkerOutputCapture=bool(options.disableWorkerOutputCapture),
            disableProgress=bool(options.disableProgress),
            statusWait=_checked(float, options.statusWait, "--statusWait"),
            disableJobStoreChecksumVerification=bool(options.disableJobStoreChecksumVerification),
            badWorker=float(options.badWorker),
            badWorkerFailInterval=float(options.badWorkerFailInterval),
            callCache=_call_cache_locator(getattr(options, "callCache", None)),
            callCacheAllJobs=bool(getattr(options, "callCacheAllJobs", False)),
            batchSystem=batch_system,
            elastic=elastic,
            ignoredOptions=tuple(ignored),
        )

    # Toil's names for the default requirements.
    @property
    def defaultCores(self) -> float:
        return self.defaults.cores

    @property
    def defaultMemory(self) -> int:
        return self.defaults.memory

    @property
    def defaultDisk(self) -> int:
        return self.defaults.disk

    @property
    def defaultPreemptible(self) -> bool:
        return self.defaults.preemptible

    # -- the views ---------------------------------------------------------------------------

    def worker_context(self, workflow_id: str, launch_dir: str, code_paths: list[str], main_module: str | None,
                       realtime_log_address: tuple[str, int] | None,
                       leader_env: dict[str, str] | None = None,
                       main_definitions: dict[str, bytes] | None = None) -> WorkerContext:
        return WorkerContext(
            locator=self.jobStoreLocator,
            workflow_id=workflow_id,
            run_id=uuid.uuid4().hex,
            work_dir=self.workDir,
            launch_dir=launch_dir,
            code_paths=code_paths,
            main_module=main_module,
            defaults=self.defaults,
            env=self.env,
            leader_env=leader_env,
            main_definitions=main_definitions or {},
            max_log_size=self.maxLogFileSize,
            clean_work_dir=self.cleanWorkDir,
            bad_worker=self.badWorker,
            bad_worker_interval=self.badWorkerFailInterval,
            log_level=self.logLevel,
            capture_output=not self.disableWorkerOutputCapture,
            caching=self.caching,
            # A chained job would share its parent's --maxJobDuration deadline.
            chaining=not self.disableChaining and self.maxJobDuration is None,
            return_all_logs=self.writeLogs is not None and self.writeLogsFromAllJobs,
            realtime_log_address=realtime_log_address,
            verify_checksums=not self.disableJobStoreChecksumVerification,
            call_cache=self.callCache,
            cache_all_jobs=self.callCacheAllJobs,
        )

    def leader_limits(self) -> LeaderLimits:
        return LeaderLimits(
            retry_count=self.retryCount,
            max_cores=self.maxCores,
            max_memory=self.maxMemory,
            max_disk=self.maxDisk,
            scale=self.scale,
            default_memory=self.defaults.memory,
            batching=not self.disableChaining,
            max_job_duration=self.maxJobDuration,
            kill_polling_interval=self.kill_polling_interval,
            max_service_jobs=self.maxServiceJobs,
            max_preemptible_service_jobs=self.maxPreemptibleServiceJobs,
            service_poll_interval=self.servicePollingInterval,
            deadlock_wait=self.deadlockWait,
            double_memory=self.doubleMem,
            unlimited_preemptible_retries=self.enableUnlimitedPreemptibleRetries,
            autoscaling_config=self.autoscalingConfig,
            preemptible_compensation=self.preemptibleCompensation,
        )

    def report_options(self) -> ReportOptions:
        return ReportOptions(
            record_stats=self.stats,
            write_logs_dir=self.writeLogs,
            write_logs_gzip=self.writeLogsGzip,
            write_logs_from_all_jobs=self.writeLogsFromAllJobs,
            show_progress=not self.disableProgress,
            status_wait=self.statusWait,
            write_messages=self.writeMessages,
        )
