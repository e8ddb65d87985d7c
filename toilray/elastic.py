"""Elastic Ray on an HPC scheduler, from a login node (``--batchSystem slurm|grid_engine|lsf``).

The run's leader and a Ray head (no cores: no job runs on the login node) stay where the
command runs; Ray worker nodes come and go as scheduler jobs, each one a ``ray start --block``
(``toilray.lib.ray_node``) that joins the head and holds a whole worker node of the shape
the options give, or a slice of one when the pending demand is smaller. ``plan`` decides,
from Ray's pending demand and the worker jobs' states, what to submit and what to cancel; it
is pure, and ``ElasticWorkers`` drives it: every ``--statePollingWait`` seconds it reads Ray's
demand and idle nodes (``ray.autoscaler.v2.sdk.get_cluster_status``), asks the scheduler once
about all worker jobs, and acts. The scheduler thus sees one job per Ray node and one status
query per interval however many jobs the workflow has.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from toilray import hpc_schedulers
from toilray.hpc import FINISHED, PENDING, BatchRequest, Scheduler, SchedulerError, SubmissionRefusedError
from toilray.lib.conversions import readable_size
from toilray.lib.ray_node import ray_memory

logger = logging.getLogger(__name__)

# A worker job's state as the plan sees it: in the scheduler's queue, started but its Ray node
# not yet in the cluster, or its Ray node in the cluster.
QUEUED, STARTING, JOINED = "queued", "starting", "joined"
# The Ray node label that names the worker job a node belongs to.
WORKER_LABEL = "toilray-worker"
_A_LITTLE = 1e-6
# Refusals in a row, with no worker job left, after which the run fails: a partition or argument
# that the scheduler refuses will not be taken later, and the run would wait for nodes forever.
_REFUSALS = 3
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True, slots=True)
class Shape:
    """What one worker job asks the scheduler for (memory in bytes; None: the scheduler's
    default, and Ray measures the node)."""

    cpus: int
    memory: int | None = None
    gpus: int = 0

    def describe(self) -> str:
        memory = "" if self.memory is None else f", {readable_size(self.memory)}"
        gpus = f", {self.gpus} GPU(s)" if self.gpus else ""
        return f"{self.cpus} core(s){memory}{gpus}"


@dataclass(frozen=True, slots=True)
class Demand:
    """``count`` Ray tasks waiting for a node, each asking for this much (memory in bytes)."""

    cpus: float
    memory: float = 0.0
    gpus: float = 0.0
    count: int = 1


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """A worker job toilray submitted and the scheduler still runs or queues."""

    job_id: str
    shape: Shape
    state: str
    submitted: float  # time.monotonic() at submission
    idle_seconds: float = 0.0  # JOINED: how long its Ray node has run nothing


@dataclass(frozen=True, slots=True)
class Limits:
    shape: Shape  # the largest worker job
    max_nodes: int
    idle_time: float  # seconds an idle worker job is kept


@dataclass(frozen=True, slots=True)
class Actions:
    submit: tuple[Shape, ...] = ()
    cancel: tuple[str, ...] = ()  # job IDs


@dataclass(slots=True)
class _Bin:
    """A worker job being filled with demand (memory as Ray counts it: without the object store)."""

    shape: Shape
    cpus: float = 0.0
    memory: float = 0.0
    gpus: float = 0.0

    def takes(self, unit: Demand) -> bool:
        room_memory = math.inf if self.shape.memory is None else ray_memory(self.shape.memory)
        if (self.cpus + unit.cpus > self.shape.cpus + _A_LITTLE or self.memory + unit.memory > room_memory
                or self.gpus + unit.gpus > self.shape.gpus + _A_LITTLE):
            return False
        self.cpus += unit.cpus
        self.memory += unit.memory
        self.gpus += unit.gpus
        return True

    def slice(self) -> Shape:
        """The part of the shape its demand needs: whole cores, a share of the memory that holds
        the demand, the GPUs it asks for."""
        cpus = max(1, math.ceil(self.cpus - _A_LITTLE))
        memory = self.shape.memory
        if memory is not None:
            share = memory * cpus // self.shape.cpus
            memory = min(memory, max(share, math.ceil(self.memory * memory / ray_memory(memory))))
        return Shape(cpus, memory, math.ceil(self.gpus - _A_LITTLE))


def fits(unit: Demand, shape: Shape) -> bool:
    """Whether one worker job of ``shape`` can run a task of ``unit``."""
    return _Bin(shape).takes(Demand(unit.cpus, unit.memory, unit.gpus))


def plan(demand: Sequence[Demand], workers: Sequence[WorkerJob], limits: Limits, now: float) -> Actions:
    """What to do now: the worker jobs to submit for the ``demand`` that the worker jobs on their
    way (queued or starting) will not take, whole shapes or one slice, never more than
    ``limits.max_nodes`` worker jobs in all (the last one allowed is whole: a slice would cap the
    run); and the worker jobs to cancel: those whose Ray node has been idle ``limits.idle_time``
    seconds, and with no demand, those queued that long."""
    units = sorted((Demand(d.cpus, d.memory, d.gpus) for d in demand if fits(d, limits.shape)
                    for _ in range(d.count)), key=lambda u: (u.gpus, u.cpus, u.memory), reverse=True)
    coming = [_Bin(w.shape) for w in workers if w.state in (QUEUED, STARTING)]
    room = max(0, limits.max_nodes - len(workers))
    new: list[_Bin] = []
    for unit in units:
        if any(b.takes(unit) for b in coming) or any(b.takes(unit) for b in new):
            continue
        if len(new) == room:
            break
        new.append(_Bin(limits.shape))
        new[-1].takes(unit)
    cancel = [w.job_id for w in workers if w.state == JOINED and w.idle_seconds >= limits.idle_time]
    if not units:
        cancel += [w.job_id for w in workers if w.state == QUEUED and now - w.submitted >= limits.idle_time]
    last = limits.max_nodes - len(workers) - 1
    return Actions(tuple(limits.shape if i == last else b.slice() for i, b in enumerate(new)), tuple(cancel))


def demand_of(bundles: Sequence[tuple[Mapping[str, float], int]]) -> list[Demand]:
    """Ray's pending task demand (bundle, count) as Demand; a bundle that asks for a resource
    other than cores, memory and GPUs is not a worker job's to meet."""
    found = []
    for bundle, count in bundles:
        if set(bundle) - {"CPU", "memory", "GPU"}:
            continue
        found.append(Demand(bundle.get("CPU", 0.0), bundle.get("memory", 0.0), bundle.get("GPU", 0.0), count))
    return found


@dataclass(frozen=True, slots=True)
class ElasticSettings:
    """The options of an elastic run: the scheduler, the worker jobs' shape and limits, and what
    each submission carries (Toil's --slurmPartition, --slurmTime, --slurmQOS, --slurmArgs and the
    TOIL_*_ARGS variables, TOIL_GRIDENGINE_PE, --memoryIsProduct)."""

    scheduler: str
    shape: Shape
    max_nodes: int
    idle_time: float
    polling: float
    queue: str | None = None
    time: str | None = None
    qos: str | None = None
    extra_args: tuple[str, ...] = ()
    parallel_environment: str | None = None
    memory_is_product: bool = False


@dataclass(slots=True)
class _Tracked:
    job_id: str
    tag: str
    shape: Shape
    submitted: float
    log: str
    started: bool = False
    joined: bool = False


class ElasticWorkers:
    """The worker jobs of one run: ``start`` the loop once the head runs, ``stop`` at the end of
    the run (every worker job left is cancelled, with one command)."""

    def __init__(self, settings: ElasticSettings, scheduler: Scheduler, address: str, temp_root: str,
                 script_dir: str) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.address = address
        self.temp_root = temp_root
        self.script_dir = script_dir
        self._limits = Limits(settings.shape, settings.max_nodes, settings.idle_time)
        self._jobs: dict[str, _Tracked] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="toilray-elastic", daemon=True)
        self._lock = threading.Lock()
        self._keep_logs = False
        self._last_error = ""
        self._submitted = 0
        self._refusals = 0
        self.failure: SubmissionRefusedError | None = None

    def start(self) -> None:
        os.makedirs(self.script_dir, exist_ok=True)
        self._thread.start()

    def _loop(self) -> None:
        from ray.exceptions import RayError

        while not self._stop.wait(self.settings.polling):
            try:
                self.step()
            except SubmissionRefusedError as exc:
                self._refusals += 1
                if self._refusals >= _REFUSALS and not self._jobs:
                    self.failure = SubmissionRefusedError(
                        f"{self.scheduler.name} refused the run's worker jobs {self._refusals} times in a row: {exc}")
                    return
                self._log_once(exc)
            except (SchedulerError, RayError, OSError) as exc:
                self._log_once(exc)

    def _log_once(self, exc: Exception) -> None:
        # A scheduler or the head that does not answer now may answer next time: said once.
        if str(exc) != self._last_error:
            logger.error("Elastic %s: %s (trying again every %g s)", self.scheduler.name, exc, self.settings.polling)
        self._last_error = str(exc)

    def _cluster(self) -> tuple[list[Demand], dict[str, float]]:
        """Ray's pending demand, and the idle seconds of each worker job's Ray node, by tag."""
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(self.address)
        bundles = [(b.bundle, b.count) for d in status.resource_demands.ray_task_actor_demand
                   for b in d.bundles_by_count]
        nodes: dict[str, float] = {}
        for node in [*status.active_nodes, *status.idle_nodes]:
            tag = (node.labels or {}).get(WORKER_LABEL)
            if tag:
                usage = node.resource_usage
                nodes[tag] = usage.idle_time_ms / 1000 if usage is not None else 0.0
        return demand_of(bundles), nodes

    def step(self) -> None:
        """One turn: read Ray and the scheduler (one status query), plan, act."""
        demand, nodes = self._cluster()
        with self._lock:
            if self._jobs:
                states = hpc_schedulers.states(self.scheduler, list(self._jobs))
                for job_id, state in states.items():
                    job = self._jobs[job_id]
                    if state == FINISHED:
                        self._ended(job)
                    else:
                        job.started = job.started or state != PENDING
            workers = []
            now = time.monotonic()
            for job in self._jobs.values():
                job.joined = job.joined or job.tag in nodes
                state = JOINED if job.tag in nodes else STARTING if job.started or job.joined else QUEUED
                workers.append(WorkerJob(job.job_id, job.shape, state, job.submitted, nodes.get(job.tag, 0.0)))
            actions = plan(demand, workers, self._limits, now)
            logger.debug("Elastic %s: %d task(s) wait for a node; worker jobs %s; %s", self.scheduler.name,
                         sum(d.count for d in demand), {w.job_id: w.state for w in workers}, actions)
            if actions.cancel:
                hpc_schedulers.cancel(self.scheduler, actions.cancel)
                for job_id in actions.cancel:
                    job = self._jobs.pop(job_id)
                    logger.info("Cancelled %s worker job %s (%s): %s", self.scheduler.name, job_id,
                                job.shape.describe(), "idle" if job.joined else "no longer needed")
            for shape in actions.submit:
                self._submit(shape)

    def _ended(self, job: _Tracked) -> None:
        """The scheduler no longer runs ``job``: cancelled by someone else, at its time limit, or
        failed to start Ray. Its Ray node, if it had one, is lost; its jobs run elsewhere."""
        del self._jobs[job.job_id]
        if job.joined:
            logger.warning("%s worker job %s ended (cancelled, or at its time limit): its Ray node is lost",
                           self.scheduler.name, job.job_id)
        else:
            self._keep_logs = True
            logger.error("%s worker job %s ended before its Ray node joined the cluster; see %s",
                         self.scheduler.name, job.job_id, job.log)

    def request(self, shape: Shape, tag: str, number: int) -> BatchRequest:
        """The batch job of the run's ``number``-th worker node, of ``shape``, labelled ``tag``."""
        settings = self.settings
        # A short directory: Ray's socket paths in it must stay under 108 bytes.
        command = [sys.executable, "-m", "toilray.lib.ray_node", f"--temp-dir={self.temp_root}/w{number}",
                   f"--num-cpus={shape.cpus}", f"--num-gpus={shape.gpus}", f"--address={self.address}",
                   f"--labels={WORKER_LABEL}={tag}"]
        if shape.memory is not None:
            command.append(f"--memory={shape.memory}")
        # The node imports this very toilray, installed or not.
        path = os.pathsep.join(p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p)
        return BatchRequest(
            command=tuple(command), nodes=1, cpus=shape.cpus, memory=shape.memory, gpus=shape.gpus,
            time=settings.time, queue=settings.queue, qos=settings.qos, job_name="toilray-worker",
            output=os.path.join(self.script_dir, f"{tag}.log"), extra_args=settings.extra_args,
            parallel_environment=settings.parallel_environment, memory_is_product=settings.memory_is_product,
            environment={"PYTHONPATH": path})

    def _submit(self, shape: Shape) -> None:
        tag = uuid.uuid4().hex[:12]
        self._submitted += 1
        request = self.request(shape, tag, self._submitted)
        job_id = hpc_schedulers.submit(self.scheduler, request, os.path.join(self.script_dir, f"{tag}.sh"))
        self._refusals = 0
        self._jobs[job_id] = _Tracked(job_id, tag, shape, time.monotonic(), request.output or "")
        logger.info("Submitted %s worker job %s (%s) for pending jobs", self.scheduler.name, job_id,
                    shape.describe())

    def stop(self) -> None:
        """End the loop and cancel every worker job left (safe to call more than once)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            left, self._jobs = list(self._jobs), {}
        if left:
            try:
                hpc_schedulers.cancel(self.scheduler, left)
                logger.info("Cancelled the run's %d %s worker job(s)", len(left), self.scheduler.name)
            except SchedulerError as exc:
                logger.error("Could not cancel %s worker job(s) %s: %s", self.scheduler.name, " ".join(left), exc)
        if not self._keep_logs:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.script_dir)
                os.rmdir(os.path.dirname(self.script_dir))  # toilray-hpc/, when no other run uses it
