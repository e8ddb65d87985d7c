"""Toil's workflow options, with Toil's names and defaults, for argparse.

Options that only configure batch systems or provisioners that Ray replaces are still
recognised, so that a Toil command line gets a clear answer: the run stops with a message
saying what toilray does instead. None is silently ignored.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from toilray.lib.conversions import human2bytes
from toilray.local_ray import DEFAULT_IDLE_TIMEOUT
from toilray.requirements import TOIL_DEFAULTS

CLEAN_CHOICES = ("always", "onError", "never", "onSuccess")
SUPPORTED_BATCH_SYSTEMS = ("ray", "single_machine")
# Elastic Ray from a login node: worker nodes as scheduler jobs (toilray.elastic).
ELASTIC_BATCH_SYSTEMS = ("slurm", "grid_engine", "gridengine", "lsf")
_OTHER_HPC_BATCH_SYSTEMS = ("torque", "htcondor")
# The options of elastic runs only (dest -> what to use instead on a Ray cluster).
ELASTIC_OPTIONS: dict[str, str] = {
    "maxNodes": "node counts are set in the Ray cluster configuration (max_workers)",
    "nodeIdleTime": "the Ray autoscaler's idle_timeout_minutes is set in the Ray cluster configuration",
    "nodeCores": "node types are set in the Ray cluster configuration (cluster-configs/*.yaml)",
    "nodeMemory": "node types are set in the Ray cluster configuration (cluster-configs/*.yaml)",
    "nodeAccelerators": "node types are set in the Ray cluster configuration (cluster-configs/*.yaml)",
    "slurmPartition": "submit a Slurm allocation with 'toilray hpc slurm --slurmPartition ...'",
    "slurmTime": "submit a Slurm allocation with 'toilray hpc slurm --slurmTime ...'",
    "slurmQOS": "submit a Slurm allocation with 'toilray hpc slurm --slurmQOS ...'",
    "slurmArgs": "submit a Slurm allocation with 'toilray hpc slurm --slurmArgs ...'",
    "memoryIsProduct": "submit an LSF allocation with 'toilray hpc lsf --memoryIsProduct ...'",
}
# Elastic options that a run on Ray accepts with a warning, as Toil's tuning options.
NO_EFFECT_ON_RAY: dict[str, str] = {
    "statePollingWait": "scheduler polling is for --batchSystem slurm, grid_engine or lsf; Ray reports task "
                        "completion directly",
}

# Option -> what toilray does instead. Used both to reject them on the command line and to
# reject them when a script sets them on the options object.
REPLACED_OPTIONS: dict[str, str] = {
    "parasolCommand": "Parasol is not used; jobs run as Ray tasks",
    "parasolMaxBatches": "Parasol is not used; jobs run as Ray tasks",
    "mesosEndpoint": "Mesos is not used; pass --rayAddress to use a running Ray cluster",
    "kubernetesHostPath": "Kubernetes jobs are not used; run a Ray cluster (KubeRay) and pass --rayAddress",
    "kubernetesOwner": "Kubernetes jobs are not used; run a Ray cluster (KubeRay) and pass --rayAddress",
    "kubernetesServiceAccount": "Kubernetes jobs are not used; run a Ray cluster and pass --rayAddress",
    "kubernetesPodTimeout": "Kubernetes jobs are not used; run a Ray cluster and pass --rayAddress",
    "tesEndpoint": "TES is not used; pass --rayAddress to use a running Ray cluster",
    "tesUser": "TES is not used; pass --rayAddress to use a running Ray cluster",
    "tesPassword": "TES is not used; pass --rayAddress to use a running Ray cluster",
    "tesBearerToken": "TES is not used; pass --rayAddress to use a running Ray cluster",
    "awsBatchRegion": "AWS Batch is not used; start a Ray cluster with 'ray up cluster-configs/aws.yaml'",
    "awsBatchQueue": "AWS Batch is not used; start a Ray cluster with 'ray up cluster-configs/aws.yaml'",
    "awsBatchJobRoleArn": "AWS Batch is not used; start a Ray cluster with 'ray up cluster-configs/aws.yaml'",
    "coalesceStatusCalls": "LSF status polling is not used; Ray tracks running tasks itself",
    "manualMemArgs": "Grid Engine memory flags are not used; Ray schedules by the jobs' memory",
    "provisioner": "autoscaling is done by the Ray autoscaler: 'ray up cluster-configs/aws.yaml' or gcp.yaml",
    "nodeTypes": "node types are set in the Ray cluster configuration (cluster-configs/*.yaml)",
    "minNodes": "node counts are set in the Ray cluster configuration (min_workers)",
    "targetTime": "the Ray autoscaler decides when to scale (cluster-configs/*.yaml)",
    "betaInertia": "the Ray autoscaler decides when to scale (cluster-configs/*.yaml)",
    "scaleInterval": "the Ray autoscaler decides when to scale (cluster-configs/*.yaml)",
    "nodeStorage": "disk sizes are set in the Ray cluster configuration (node_config)",
    "nodeStorageOverrides": "disk sizes are set in the Ray cluster configuration (node_config)",
    "metrics": "use the Ray dashboard (and its Prometheus/Grafana integration) for metrics",
    "assumeZeroOverhead": "the Ray autoscaler packs nodes itself",
    "forceDockerAppliance": "there is no Toil appliance; Ray clusters use the images in cluster-configs/",
    "clusterStats": "use the Ray dashboard or 'toilray stats' for resource usage",
    "noStdOutErr": "job output is always captured per job attempt",
    "debugWorker": "use 'toilray debug-job JOBSTORE JOB' to run a job in the foreground under pdb",
    "maxLocalJobs": "every job runs as a Ray task wherever Ray places it; limit running jobs with --maxCores, "
                    "--maxMemory or --maxDisk",
}

# Replaced options that only tune scaling or polling, which Ray does itself. A pipeline that
# sets one in its code (cactus sets targetTime) runs on with a warning; on the command line
# they are refused like the others, as the user can simply leave them out.
TUNING_ONLY_OPTIONS = frozenset({
    "targetTime", "betaInertia", "scaleInterval", "assumeZeroOverhead",
    "coalesceStatusCalls",
})


class _Replaced(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("nargs", "?")
        super().__init__(option_strings, dest, default=None, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        parser.error(f"{option} is not used by toilray: {REPLACED_OPTIONS[self.dest]}")


def _size(text: str) -> int:
    try:
        return human2bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_clean(text: str) -> str:
    """A --clean / --cleanWorkDir policy in its canonical spelling (matched case-insensitively)."""
    for choice in CLEAN_CHOICES:
        if str(text).lower() == choice.lower():
            return choice
    raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(CLEAN_CHOICES)})")


def clean_applies(policy: str, succeeded: bool) -> bool:
    """Whether a --clean-style policy deletes now, after a run or attempt that (did not) succeed."""
    return policy == "always" or (policy == "onSuccess" and succeeded) or (policy == "onError" and not succeeded)


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "t", "y"):
        return True
    if lowered in ("false", "no", "0", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def embedded_ray(flag: bool) -> bool:
    """Whether a run starts a Ray of its own: --embeddedRay, or TOILRAY_EMBEDDED_RAY set to other than 0."""
    return bool(flag) or os.environ.get("TOILRAY_EMBEDDED_RAY", "") not in ("", "0")


def batch_system_type(text: str) -> str:
    if text in SUPPORTED_BATCH_SYSTEMS:
        return text
    if text in ELASTIC_BATCH_SYSTEMS:
        return "grid_engine" if text == "gridengine" else text
    if text in _OTHER_HPC_BATCH_SYSTEMS:
        raise argparse.ArgumentTypeError(
            f"{text} is not a toilray batch system: inside a {text} allocation, start Ray on its nodes "
            "and pass --rayAddress"
        )
    raise argparse.ArgumentTypeError(
        f"{text} is not a toilray batch system: toilray runs every job on Ray "
        "(a local one by default, or a cluster given with --rayAddress)"
    )


_LOG_LEVELS = {"OFF": "CRITICAL", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "WARN": "WARNING",
               "WARNING": "WARNING", "INFO": "INFO", "DEBUG": "DEBUG"}


def parse_log_level(text: str) -> str:
    """A log level in the spelling Python's logging uses (OFF and WARN are Toil's aliases)."""
    try:
        return _LOG_LEVELS[str(text).upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"invalid log level {text!r} (choose from OFF, CRITICAL, ERROR, WARN, INFO, DEBUG)"
        ) from None


def add_log_level_options(group: argparse.ArgumentParser | Any, default_level: str = "INFO") -> None:
    """The log level flags (--logLevel, --logDebug, ...), --logFile and --rotatingLogging: what
    ``add_toil_options`` and ``toilray.statsAndLogging.add_logging_options`` both offer."""
    for flag, level in (("--logOff", "CRITICAL"), ("--logCritical", "CRITICAL"), ("--logError", "ERROR"),
                        ("--logWarning", "WARNING"), ("--logInfo", "INFO"), ("--logDebug", "DEBUG")):
        group.add_argument(flag, dest="logLevel", action="store_const", const=level, default=default_level,
                           help=f"Log at level {level} and above (default: --logLevel {default_level}).")
    group.add_argument("--logLevel", type=parse_log_level, default=default_level,
                       help=f"OFF, CRITICAL, ERROR, WARN, INFO or DEBUG (default {default_level}).")
    group.add_argument("--logFile", default=None,
                       help="Also write the leader's log to this file (default: stderr only).")
    group.add_argument("--rotatingLogging", action="store_true", default=False,
                       help="Rotate the --logFile at --maxLogFileSize bytes, keeping one old file (default off).")


def add_toil_options(parser: argparse.ArgumentParser | Any, jobstore_as_flag: bool = False) -> None:
    """Add every workflow option (and the job store argument) to an argparse parser."""
    if jobstore_as_flag:
        parser.add_argument("--jobStore", "--jobstore", dest="jobStore", default=None,
                            help="The job store locator: file:PATH, a plain path, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX.")
    else:
        parser.add_argument("jobStore", help="The job store locator: file:PATH, a plain path, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX.")

    core = parser.add_argument_group("toilray core options")
    core.add_argument("--workDir", default=None,
                      help="Absolute path of a directory for per-job temporary files (default: the system temp dir).")
    core.add_argument("--coordinationDir", default=None,
                      help="Accepted for Toil compatibility; toilray keeps its node-local state (file cache, "
                           "locks) under --workDir.")
    core.add_argument("--stats", action="store_true", default=False,
                      help="Record statistics for 'toilray stats'; keeps the job store (default off).")
    core.add_argument("--clean", type=parse_clean, default=None, metavar="{always,onError,never,onSuccess}",
                      help="When to delete the job store (default onSuccess; never with --stats).")
    core.add_argument("--cleanWorkDir", type=parse_clean, default="always",
                      metavar="{always,onError,never,onSuccess}",
                      help="When to delete a job's temporary directory (default always).")
    core.add_argument("--restart", action="store_true", default=False,
                      help="Resume the workflow in the existing job store (default: start a new one).")
    core.add_argument("--rayAddress", default=None,
                      help="Address of a running Ray cluster (default: $RAY_ADDRESS, else the local Ray that "
                           "toilray runs on this machine share, started when none runs).")
    core.add_argument("--embeddedRay", action="store_true", default=False,
                      help="Without --rayAddress: start a Ray of this run's own and stop it at the end, instead "
                           "of using the shared local Ray (default off; TOILRAY_EMBEDDED_RAY=1 turns it on).")
    core.add_argument("--localRayIdleTimeout", type=_positive_float, default=DEFAULT_IDLE_TIMEOUT,
                      metavar="SECONDS",
                      help="When this run starts the shared local Ray: stop it after this many seconds without "
                           "a workflow (default 600).")
    core.add_argument("--autoscalingConfig", default=None, metavar="YAML",
                      help="The Ray autoscaler's cluster configuration (what 'ray up' was given; default: "
                           "~/ray_bootstrap_config.yaml, where 'ray up' puts it on the head, when it exists). "
                           "A job that fits one of its node types but no current node waits for the "
                           "autoscaler to add a node instead of failing.")
    core.add_argument("--preemptibleCompensation", type=_fraction, default=0.0, metavar="FRACTION",
                      help="On an autoscaling cluster: when preemptible jobs have waited 5 minutes for spot nodes "
                           "that do not come, ask the autoscaler for this many on-demand nodes per missing spot "
                           "node (0 to 1; 0.5 replaces two missing spot nodes with one; default 0).")
    core.add_argument("--rayConnectTimeout", type=_positive_float, default=15.0, metavar="SECONDS",
                      help="Give up connecting to the Ray cluster of --rayAddress after this many seconds, "
                           "with an error saying what to check (default 15).")

    logs = parser.add_argument_group("toilray logging options")
    add_log_level_options(logs)
    logs.add_argument("--maxLogFileSize", type=_size, default=64000,
                      help="Keep at most this many bytes of each job's log (default 64000; 0 keeps all).")
    logs.add_argument("--writeLogs", nargs="?", const=".", default=None, metavar="DIR",
                      help="Write the logs of failed jobs to files in DIR (default off; DIR defaults to the current "
                           "directory).")
    logs.add_argument("--writeLogsGzip", nargs="?", const=".", default=None, metavar="DIR",
                      help="As --writeLogs, gzipped (default off).")
    logs.add_argument("--writeLogsFromAllJobs", action="store_true", default=False,
                      help="With --writeLogs: write the logs of all jobs, not only failed ones (default off).")
    logs.add_argument("--writeMessages", default=None, metavar="FILE",
                      help="Write a line to FILE for each job issued, updated, completed or failed, in Toil's "
                           "message bus format (default off).")
    logs.add_argument("--realTimeLogging", action="store_true", default=False,
                      help="Send messages of running jobs to the leader as they happen (default off).")

    batch = parser.add_argument_group("toilray execution options")
    batch.add_argument("--batchSystem", type=batch_system_type, default="ray",
                       help="ray (the default; single_machine means the same), or slurm, grid_engine (gridengine) "
                            "or lsf: from a login node, a Ray head here and Ray worker nodes as scheduler jobs, "
                            "added for pending jobs and cancelled when idle.")
    batch.add_argument("--disableAutoDeployment", action="store_true", default=False,
                       help="Do not ship the workflow's own code (the script's directory, or the package root with "
                            "python -m) to the nodes of the Ray cluster named by --rayAddress: it must then be at the "
                            "same path on every node (default: shipped).")
    batch.add_argument("--scale", type=float, default=1.0,
                       help="Multiply every job's cores by this factor (default 1).")
    batch.add_argument("--linkImports", dest="symlinkImports", action="store_true", default=True,
                       help="Accepted for Toil compatibility; toilray always copies imported files into the job "
                            "store.")
    batch.add_argument("--moveExports", action="store_true", default=False,
                       help="Accepted for Toil compatibility; toilray always copies exported files.")
    batch.add_argument("--disableCaching", dest="caching", action="store_false", default=None,
                       help="Do not share one cached copy of a global file between jobs on a node (default: shared).")
    batch.add_argument("--caching", type=_bool, default=None,
                       help="Turn the node file cache on or off, true or false (default true).")

    elastic = parser.add_argument_group("toilray HPC options (--batchSystem slurm, grid_engine or lsf)")
    elastic.add_argument("--maxNodes", type=_positive_int, default=None,
                         help="Most worker jobs (Ray worker nodes) at any one time (default 10).")
    elastic.add_argument("--nodeIdleTime", type=_positive_float, default=None, metavar="SECONDS",
                         help="Cancel a worker job whose Ray node has run nothing for this long (default 60).")
    elastic.add_argument("--statePollingWait", type=_positive_float, default=None, metavar="SECONDS",
                         help="Seconds between two status queries of the worker jobs, one query for all of them "
                              "(default 1).")
    elastic.add_argument("--nodeCores", type=_positive_int, default=None,
                         help="Cores of the largest worker job; fewer when the pending jobs need fewer "
                              "(default 1).")
    elastic.add_argument("--nodeMemory", type=_size, default=None,
                         help="Memory of the largest worker job, such as 16G (default: the scheduler's default; "
                              "Ray then measures the node).")
    elastic.add_argument("--nodeAccelerators", type=_positive_int, default=None,
                         help="GPUs of a worker job (Slurm: --gres=gpu:N; default 0).")
    elastic.add_argument("--slurmPartition", default=None, help="Slurm partition of the worker jobs.")
    elastic.add_argument("--slurmTime", default=None, help="Time limit of the worker jobs (HH:MM:SS).")
    elastic.add_argument("--slurmQOS", default=None, help="Slurm quality of service of the worker jobs.")
    elastic.add_argument("--slurmArgs", default=None,
                         help="More sbatch arguments for the worker jobs (after those of TOIL_SLURM_ARGS).")
    elastic.add_argument("--memoryIsProduct", action="store_true", default=None,
                         help="LSF reads memory per slot: ask for the worker job's memory divided by its cores.")

    services = parser.add_argument_group("toilray service options")
    services.add_argument("--maxServiceJobs", type=int, default=sys.maxsize,
                          help="Most services that are not preemptible running at any one time (default: no "
                               "limit).")
    services.add_argument("--maxPreemptibleServiceJobs", type=int, default=sys.maxsize,
                          help="Most preemptible services (which may run on preemptible nodes) running at any one "
                               "time (default: no limit); they do not count against --maxServiceJobs.")
    services.add_argument("--deadlockWait", type=float, default=60.0,
                          help="Seconds only services may run, with no job able to start, before the workflow "
                               "fails as deadlocked (default 60).")
    services.add_argument("--deadlockCheckInterval", type=float, default=30.0,
                          help="Accepted for Toil compatibility; toilray checks for a deadlock at every turn of "
                               "the leader's loop, at least once a second.")
    services.add_argument("--servicePollingInterval", type=float, default=60.0,
                          help="Seconds between calls of each running service's check() (default 60).")

    resources = parser.add_argument_group("toilray resource options")
    resources.add_argument("--defaultMemory", type=_size, default=TOIL_DEFAULTS.memory,
                           help="Memory of jobs that set none (default 2Gi).")
    resources.add_argument("--defaultCores", type=float, default=TOIL_DEFAULTS.cores,
                           help="Cores of jobs that set none (default 1).")
    resources.add_argument("--defaultDisk", type=_size, default=TOIL_DEFAULTS.disk,
                           help="Disk of jobs that set none (default 2Gi).")
    resources.add_argument("--defaultAccelerators", default=None,
                           help="Accelerators of jobs that set none, such as cuda:1 (default none).")
    resources.add_argument("--defaultPreemptible", "--defaultPreemptable", dest="defaultPreemptible",
                           type=_bool, nargs="?", const=True, default=TOIL_DEFAULTS.preemptible,
                           help="Whether jobs that set nothing may run on preemptible nodes (default false).")
    resources.add_argument("--maxCores", type=float, default=None,
                           help="Most cores used by running jobs at any one time (default: what Ray has).")
    resources.add_argument("--maxMemory", type=_size, default=None,
                           help="Most memory used by running jobs at any one time (default: what Ray has).")
    resources.add_argument("--maxDisk", type=_size, default=None,
                           help="Most disk used by running jobs at any one time (default: no limit).")

    retry = parser.add_argument_group("toilray retry options")
    retry.add_argument("--retryCount", type=int, default=1,
                       help="Times a failing job is retried (default 1: two attempts).")
    retry.add_argument("--enableUnlimitedPreemptibleRetries", "--enableUnlimitedPreemptableRetries",
                       dest="enableUnlimitedPreemptibleRetries", action="store_true", default=False,
                       help="Rerun a job whose node was lost without using one of its retries (default off).")
    retry.add_argument("--doubleMem", action="store_true", default=False,
                       help="Double the memory of a job killed for running out of memory when it is retried "
                            "(default off).")
    retry.add_argument("--maxJobDuration", type=_positive_float, default=None,
                       help="Kill (and retry) jobs that run longer than this many seconds (default: no limit).")
    retry.add_argument("--rescueJobsFrequency", type=float, default=60.0,
                       help="Accepted for Toil compatibility; Ray reports a lost job at once, so toilray does "
                            "not poll for them.")

    cache = parser.add_argument_group("toilray call cache options")
    cache.add_argument("--callCache", default=None, metavar="LOCATOR",
                       help="Keep job results in the call cache at LOCATOR (a path, s3://BUCKET/PREFIX or "
                            "gs://BUCKET/PREFIX) and take them from it when the same call (same code, arguments "
                            "and input file contents) ran before; only jobs made with cache=True or functions "
                            "marked @cached use it, unless --callCacheAllJobs (default off).")
    cache.add_argument("--callCacheAllJobs", action="store_true", default=False,
                       help="With --callCache: every job of the run may be taken from the call cache (default: "
                            "only the jobs that ask for it).")

    misc = parser.add_argument_group("toilray miscellaneous options")
    misc.add_argument("--disableChaining", action="store_true", default=False,
                      help="Never run several small jobs in one Ray task (default: chain them).")
    misc.add_argument("--disableJobStoreChecksumVerification", action="store_true", default=False,
                      help="Do not verify the checksums of files read from the job store (default: verify).")
    misc.add_argument("--sseKey", default=None, metavar="FILE",
                      help="Accepted for Toil compatibility with a file job store, which does not encrypt; "
                           "refused with an s3 or gs store (use the bucket's default encryption).")
    misc.add_argument("--setEnv", "-e", action="append", default=[], metavar="NAME[=VALUE]",
                      help="Set an environment variable for every job; without VALUE it is copied from here (default: "
                           "none).")
    misc.add_argument("--statusWait", type=float, default=3600.0,
                      help="Seconds between the leader's log lines counting the jobs done, running, queued and "
                           "failed (default 3600).")
    misc.add_argument("--disableProgress", action="store_true", default=False,
                      help="Do not show the progress line on a terminal or the bar in a notebook (default: shown).")
    misc.add_argument("--disableWorkerOutputCapture", action="store_true", default=False,
                      help="Let jobs' stdout and stderr go to the worker's own, not the job's log (default: "
                           "captured).")
    misc.add_argument("--badWorker", type=_fraction, default=0.0,
                      help="Testing: kill this fraction of job attempts with SIGKILL (default 0).")
    misc.add_argument("--badWorkerFailInterval", type=float, default=0.01,
                      help="Testing: kill at a random time up to this many seconds after the job starts "
                           "(default 0.01).")
    misc.add_argument("--kill_polling_interval", type=float, default=5.0,
                      help="Seconds between the leader's checks for a 'toilray kill' request (default 5).")

    for name in REPLACED_OPTIONS:
        parser.add_argument(f"--{name}", action=_Replaced, dest=name)


def get_default_argument_parser(jobstore_as_flag: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_toil_options(parser, jobstore_as_flag)
    return parser


def get_default_options(jobStore: str | os.PathLike[str] | None = None,
                        jobstore_as_flag: bool = False) -> argparse.Namespace:
    """Toil's defaults for a job store given as a locator or any path-like object."""
    parser = get_default_argument_parser(jobstore_as_flag)
    locator = None if jobStore is None else os.fspath(jobStore)
    if jobstore_as_flag:
        args = [] if locator is None else ["--jobStore", locator]
    else:
        if locator is None:
            raise ValueError("getDefaultOptions needs a job store locator")
        args = [locator]
    return parser.parse_args(args)
