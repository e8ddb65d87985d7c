"""The leader: drives the job-graph state machine with Ray tasks.

It runs in the process that called ``Toil.start`` (or ``restart``). It never runs user code
and never unpickles a job body: it turns ready jobs into Ray tasks with the jobs' resources,
hands each task the ObjectRefs of the return values its promises need, and feeds the
outcomes back into :class:`~toilray.leader_state.LeaderState`. Completions arrive through
future callbacks, so handling one costs the same however many tasks are in flight.

Quick jobs of the same kind and requirements may share one Ray task when more of them are
ready than the cluster has slots (``--disableChaining`` turns this off); each is still
committed on its own.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from typing import Any, Protocol

import ray
from ray.exceptions import LocalRayletDiedError, NodeDiedError, ObjectLostError, OutOfMemoryError, RayError

from toilray import serialize
from toilray.cluster import (
    RayConnection,
    autoscaler_node_types,
    placement_resources,
    why_no_node_type_fits,
    why_unschedulable,
)
from toilray.compensation import PreemptibleCompensation
from toilray.config import LeaderLimits
from toilray.exceptions import DeadlockException, FailedJobsException, WorkflowKilledException
from toilray.jobStores.jobStore import JobStore
from toilray.leader_results import ResultKeeper
from toilray.leader_state import NODE_LOSSES_PER_JOB, FailureAction, LeaderState, Loss
from toilray.lib.conversions import readable_size
from toilray.protocol import LOG_MARK, JobSpec, Outcome, TaskItem, WorkerContext
from toilray.requirements import Requirements
from toilray.run_reports import STATUS_INTERVAL, RunReports
from toilray.services import ServiceManager, room_beside_services
from toilray.worker import MAX_CHAIN, run_jobs

logger = logging.getLogger("toilray.leader")

_run_jobs_task = ray.remote(max_retries=0)(run_jobs)

# A kind of job counts as quick (worth batching) below this mean wall time, in seconds.
_QUICK_JOB_SECONDS = 0.05
_QUICK_JOB_SAMPLES = 3
_MAX_BATCH = 64
# Return values up to this size (Ray's own limit for keeping a value in its owner's process)
# are kept by the leader as bytes, not as Ray references: a reference costs the leader some
# 2.7 KB in Ray's bookkeeping, and a task given thousands of references is slow to submit,
# where the bytes go to a task as one argument however many there are.
_SMALL_RESULT = 100 * 1024
# An empty frozenset costs 216 bytes: most jobs read no promise, and share this one.
_NO_PROMISES: frozenset[str] = frozenset()
# On restart, the leader applies earlier commit records for at most this long before it issues
# what is ready, so that a store of many finished jobs starts running new ones at once.
_REPLAY_SLICE_S = 0.2


def _request_resources(bundles: list[dict[str, float]]) -> None:
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=bundles)


def _loss_of(exc: RayError, timed_out: bool) -> Loss:
    """What Ray's error says became of a task that gave no answer (leader_state.uses_a_try
    decides what that costs the job)."""
    if timed_out:
        return Loss.TIME
    if isinstance(exc, OutOfMemoryError):
        return Loss.MEMORY
    # ObjectLostError: the task's answer or an input of it was on a node that is gone.
    if isinstance(exc, NodeDiedError | LocalRayletDiedError | ObjectLostError):
        return Loss.NODE
    return Loss.WORKER


class JobSource(Protocol):
    """Hands the leader jobs while the run goes on, and hears how each of them ended.

    The CWL runner is one: cwltool's workflow engine decides which step runs next, and each
    tool invocation it asks for becomes a job here. The leader asks for jobs again after every
    event, and the run ends when nothing is in flight and the source has nothing new.
    """

    def take_jobs(self) -> list[JobSpec]: ...

    def job_succeeded(self, job_id: str, value: Any) -> None: ...

    def job_failed(self, job_id: str) -> None: ...


@dataclass(slots=True)
class _Task:
    job_ids: list[str]
    refs: list[ray.ObjectRef]
    requirements: Requirements | None
    deadline: float | None
    timed_out: bool = False


class Leader:
    def __init__(self, store: JobStore, connection: RayConnection, context: WorkerContext,
                 limits: LeaderLimits, reports: RunReports) -> None:
        self.store = store
        self.limits = limits
        self.state = LeaderState(limits.retry_count,
                                 None if limits.unlimited_preemptible_retries else NODE_LOSSES_PER_JOB)
        self._connection = connection
        self._nodes = connection.nodes(context.work_dir)
        # With an autoscaler, a job no current node can hold waits for one of these to be added.
        self._node_types = connection.node_types or autoscaler_node_types(limits.autoscaling_config)
        self._compensation = PreemptibleCompensation(limits.preemptible_compensation, self._node_types,
                                                     _request_resources) \
            if limits.preemptible_compensation and self._node_types else None
        self._cpu_slots = max(1.0, connection.total_cpus())
        self._max_inflight = max(16, int(4 * self._cpu_slots))
        self._context_ref = ray.put(context)
        self._context = context
        self._results: ResultKeeper[ray.ObjectRef | bytes] = ResultKeeper(None)
        # One object for each distinct requirements (jobs of a kind ask for the same).
        self._requirements: dict[Requirements, Requirements] = {}
        self._cleanup: dict[str, list[str]] = {}
        self._committed_earlier: set[str] = set()
        self._replaying: deque[str] = deque()  # ready jobs that committed before a restart
        self._waiting: deque[str] = deque()
        self._inflight: dict[int, _Task] = {}
        self._issued: set[str] = set()  # jobs of the tasks in flight
        self._completions: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._services = ServiceManager(self._context_ref, limits.service_poll_interval,
                                        (limits.max_service_jobs, limits.max_preemptible_service_jobs),
                                        self._completions.put, lambda req: placement_resources(req, self._nodes))
        self._stuck_since: float | None = None
        self._next_task = 0
        self._used = {"cores": 0.0, "memory": 0, "disk": 0}
        self._kind_time: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.jobs_run = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self._reports = reports
        self._source: JobSource | None = None

    # -- the main loop -----------------------------------------------------------------------

    def run(self, initial_specs: list[JobSpec], result_id: str | None, restarting: bool,
            source: JobSource | None = None) -> Any:
        """Run every job; return the resolved value of job ``result_id``."""
        self._source = source
        self._results = ResultKeeper(result_id)
        if restarting:
            self._committed_earlier = set(self.store.committed_ids())
            for job_id in list(self.store.failed_ids()):
                self.store.clear_failure(job_id)
        self._add_jobs(initial_specs)
        try:
            self._loop()
        except WorkflowKilledException:
            self._write_status("killed")
            raise
        except KeyboardInterrupt:
            self._write_status("interrupted")
            raise
        finally:
            self._reports.close()
        if self.state.failed:
            self._write_status("failed")
            labels = [self.state.spec(j).label() for j in self.state.failed]
            raise FailedJobsException(self.store.locator, labels)
        if self.state.unfinished_count():
            self._write_status("failed")
            raise FailedJobsException(self.store.locator, ["(jobs left unrunnable by the graph)"])
        self._write_status("completed")
        return None if result_id is None else self.resolve_result(result_id)

    def _loop(self) -> None:
        try:
            self._loop_until_done()
        finally:
            self._services.stop_everything()
            if self._compensation is not None:
                self._compensation.close()
            self._reports.progress(self.state.finished_count, 0, len(self._waiting), len(self.state.failed),
                                   force=True)

    def _loop_until_done(self) -> None:
        next_kill_check = time.monotonic() + self.limits.kill_polling_interval
        while True:
            self._dispatch()
            if (not self._inflight and not self._replaying
                    and (not self._services.active() or self._only_blocked_services())
                    and not self._take_source_jobs()):
                return
            self._check_deadlock()
            if self._reports.status_due():
                self._connection.raise_if_failed()
                if self._node_types:
                    self._nodes_changed()
                if self._compensation is not None:
                    self._compensation.update(self._preemptible_waiting_for_nodes(), time.monotonic())
                self._write_status("running")
            self._reports.progress(self.state.finished_count, len(self._issued), len(self._waiting),
                                   len(self.state.failed))
            now = time.monotonic()
            if now >= next_kill_check:
                next_kill_check = now + self.limits.kill_polling_interval
                if self.store.kill_requested():
                    self._kill_everything()
            self._services.poll()
            waits = [0.0 if self._replaying else STATUS_INTERVAL, max(0.0, next_kill_check - now)]
            for wait in (self._until_next_deadline(), self._services.next_wakeup()):
                if wait is not None:
                    waits.append(wait)
            try:
                self._on_completion(self._completions.get(timeout=min(waits)))
            except queue.Empty:
                self._cancel_overdue()
                continue
            while True:
                try:
                    self._on_completion(self._completions.get_nowait())
                except queue.Empty:
                    break

    def _on_completion(self, event: tuple[str, Any]) -> None:
        kind, key = event
        if kind == "task":
            self._handle(key)
        else:
            self._host_events(self._services.handle(kind, key))

    def _host_events(self, events: list[tuple[str, str, str]]) -> None:
        for what, host, why in events:
            if not self.state.is_known(host):
                continue
            if what == "up":
                self.state.services_up(host)
            elif what == "stopped":
                if self.state.spec(host).id not in self.state.failed:
                    self.state.services_stopped(host)
            else:
                spec = self.state.spec(host)
                message = f"Job {spec.label()} failed: {why}"
                self.store.record_failure(host, message)
                logger.error(message)
                self._forget_dropped(self.state.services_failed(host))
        self._after_state_change()

    def _after_state_change(self) -> None:
        for finished in self.state.take_finished_subtrees():
            for file_id in self._cleanup.pop(finished, ()):
                self.store.delete_file(file_id)
        stopping = self.state.take_services_to_stop()
        for host in stopping:
            self._host_events(self._services.stop_host(host))

    def _only_blocked_services(self) -> bool:
        """Whether the services still running can serve no job any more: nothing runs, waits or
        is about to be released, and jobs failed for good (the rest waits on them). The run
        then ends as failed, naming those jobs, instead of waiting for --deadlockWait."""
        return bool(self.state.failed) and not self._waiting and self._services.settled()

    def _check_deadlock(self) -> None:
        """Raise DeadlockException when only services can run for --deadlockWait seconds."""
        if not self._services.active() or self._waiting or self._any_task_can_run():
            self._stuck_since = None
            return
        now = time.monotonic()
        if self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= self.limits.deadlock_wait:
            raise DeadlockException(
                f"Only services could run for {self.limits.deadlock_wait:g} s: the jobs that use them have no "
                "room left (raise --maxServiceJobs or --maxPreemptibleServiceJobs, or give the cluster more resources)"
            )

    def _any_task_can_run(self) -> bool:
        free = room_beside_services([n.cpus for n in self._nodes], self._cpu_slots, self._services.reserved_cores())
        return any(t.requirements is None or t.requirements.cores <= free + 1e-9 for t in self._inflight.values())

    def _kill_everything(self) -> None:
        logger.warning("A kill was requested for this workflow: stopping its %d running task(s)", len(self._inflight))
        for task in self._inflight.values():
            ray.cancel(task.refs[0], force=True)
        raise WorkflowKilledException(self.store.locator)

    def _running_jobs(self) -> int:
        """Jobs the cluster's cores let run now, out of the tasks submitted, oldest first (how
        Ray hands out its slots); a task of several jobs runs them one after another."""
        free = self._cpu_slots - self._services.reserved_cores()
        running = 0
        for task in self._inflight.values():
            cores = task.requirements.cores if task.requirements is not None else 0.0
            if cores > free + 1e-9:
                continue
            free -= cores
            running += 1
        return running

    def _nodes_changed(self) -> None:
        """Follow the nodes the autoscaler adds and removes."""
        self._nodes = self._connection.nodes(self._context.work_dir)
        self._cpu_slots = max(1.0, self._connection.total_cpus())
        self._max_inflight = max(16, int(4 * self._cpu_slots))

    def _waiting_for_nodes(self) -> int:
        """Jobs submitted that no current node can hold (the autoscaler is adding one)."""
        if not self._node_types:
            return 0
        return sum(len(t.job_ids) for t in self._inflight.values()
                   if t.requirements is not None and why_unschedulable(t.requirements, self._nodes))

    def _preemptible_waiting_for_nodes(self) -> dict[str, Requirements]:
        """Task -> requirements of the preemptible tasks submitted that no current node can hold."""
        return {str(task_id): t.requirements for task_id, t in self._inflight.items()
                if t.requirements is not None and t.requirements.preemptible
                and why_unschedulable(t.requirements, self._nodes)}

    def _write_status(self, state: str) -> None:
        """Record counts for `toilray status` (an O(unfinished jobs) count: at most every second)."""
        submitted = sum(len(t.job_ids) for t in self._inflight.values())
        for_nodes = self._waiting_for_nodes()
        running = min(self._running_jobs(), submitted - for_nodes)
        not_run = self.state.not_run_count()
        self._reports.status(state, {
            "finished": self.state.finished_count,
            "running": running,
            "queued": submitted - running - for_nodes,
            "waitingForNodes": for_nodes,
            "ready": len(self._waiting),
            "waiting": max(0, not_run - submitted - len(self._waiting) - len(self.state.failed)),
            "failed": [self.state.spec(j).label() for j in self.state.failed],
            "unfinished": not_run,
            "withSuccessors": self.state.unfinished_count() - not_run,
            "withServices": self._services.host_count(),
            "services": self._services.running_count(),
            "cacheHits": self.cache_hits,
            "cacheMisses": self.cache_misses,
        })

    def _until_next_deadline(self) -> float | None:
        deadlines = [t.deadline for t in self._inflight.values() if t.deadline is not None and not t.timed_out]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _cancel_overdue(self) -> None:
        """Kill tasks that ran past --maxJobDuration; their jobs fail (and may be retried)."""
        now = time.monotonic()
        for task in self._inflight.values():
            if task.deadline is not None and not task.timed_out and task.deadline <= now:
                task.timed_out = True
                ray.cancel(task.refs[0], force=True)

    def resolve_result(self, job_id: str, ref: ray.ObjectRef | bytes | None = None) -> Any:
        """The job's return value with its promises resolved; ``ref`` is the job's own result
        (a Ray reference, or the bytes) when the caller holds it and the leader may not keep it."""
        def fetch(wanted: str) -> bytes:
            found = ref if wanted == job_id and ref is not None else self._results.get(wanted)
            if found is None:
                return self.store.result_bytes(wanted)
            return found if isinstance(found, bytes) else ray.get(found)

        return serialize.PromiseContext({}, fetch).value_of(job_id)

    # -- issuing -----------------------------------------------------------------------------

    def _take_source_jobs(self) -> bool:
        """Add the jobs the source has ready now; say whether there were any."""
        if self._source is None:
            return False
        specs = self._source.take_jobs()
        if specs:
            self._add_jobs(specs)
        return bool(specs)

    def _add_jobs(self, specs: list[JobSpec], parent: str | None = None,
                  children: tuple[str, ...] = (), followons: tuple[str, ...] = ()) -> None:
        for spec in specs:
            # Each spec arrives unpickled with objects of its own; pending jobs share them.
            if spec.requirements is not None:
                # Accelerator requests are dicts, which cannot be hashed: such a job keeps its own.
                with contextlib.suppress(TypeError):
                    spec.requirements = self._requirements.setdefault(spec.requirements, spec.requirements)
            if not spec.promise_deps:
                spec.promise_deps = _NO_PROMISES
        self.state.add_jobs(specs, parent, children, followons)
        self._results.jobs_added(specs)

    def _queue_ready(self) -> None:
        ready = self.state.take_ready()
        if not ready:
            return
        if self._committed_earlier:
            self._replaying.extend(j for j in ready if j in self._committed_earlier)
            ready = [j for j in ready if j not in self._committed_earlier]
        # A job can be queued twice (a chained job that failed is made ready again).
        self._waiting = deque(dict.fromkeys([*self._waiting, *ready]))

    def _dispatch(self) -> None:
        self._take_source_jobs()
        self._queue_ready()
        self._replay_committed()
        if not self._waiting:
            return
        groups: dict[tuple[str, Requirements], list[str]] = defaultdict(list)
        held: deque[str] = deque()
        while self._waiting and len(self._inflight) < self._max_inflight:
            job_id = self._waiting.popleft()
            if not self.state.is_known(job_id) or self.state.has_run(job_id) or job_id in self._issued:
                continue
            spec = self.state.spec(job_id)
            if spec.requirements is None:
                self._submit([job_id], None, resolve_only=True)
                continue
            requirements = self._scaled(spec.requirements)
            problem = self._why_never_runs(requirements)
            if problem:
                self._fail_for_good(spec, problem)
                continue
            if not self._fits(requirements):
                held.append(job_id)
                continue
            if self._is_quick(spec.name):
                groups[(spec.name, requirements)].append(job_id)
                if len(groups[(spec.name, requirements)]) >= self._batch_size():
                    self._submit(groups.pop((spec.name, requirements)), requirements)
            else:
                self._submit([job_id], requirements)
        for (_, requirements), job_ids in groups.items():
            self._submit(job_ids, requirements)
        self._waiting.extendleft(reversed(held))

    def _replay_committed(self) -> None:
        """On restart, apply the commit records of ready jobs instead of running them again:
        for a slice of time per round, so that the jobs they release are issued meanwhile."""
        until = time.monotonic() + _REPLAY_SLICE_S
        while self._replaying and time.monotonic() < until:
            job_id = self._replaying.popleft()
            self._committed_earlier.discard(job_id)
            if not self.state.is_known(job_id) or self.state.has_run(job_id):
                continue
            record = self.store.read_commit(job_id)
            if record is None:
                self._waiting.append(job_id)  # uncommitted since (a checkpoint rerun)
                continue
            for file_id in record.deleted_files:
                self.store.delete_file(file_id)
            self._succeeded(Outcome.from_record(record), None)
            self._queue_ready()

    def _batch_size(self) -> int:
        if not self.limits.batching:
            return 1
        return max(1, min(_MAX_BATCH, len(self._waiting) // int(2 * self._cpu_slots)))

    def _is_quick(self, kind: str) -> bool:
        count, total = self._kind_time[kind]
        return self.limits.batching and count >= _QUICK_JOB_SAMPLES and total / count < _QUICK_JOB_SECONDS

    def _scaled(self, req: Requirements) -> Requirements:
        if self.limits.scale == 1.0:
            return req
        return Requirements(req.cores * self.limits.scale, req.memory, req.disk, req.accelerators, req.preemptible)

    def _why_never_runs(self, req: Requirements) -> str | None:
        limits = self.limits
        if limits.max_cores is not None and req.cores > limits.max_cores:
            return f"it asks for {req.cores:g} cores but --maxCores is {limits.max_cores:g}"
        if limits.max_memory is not None and req.memory > limits.max_memory:
            return (f"it asks for {readable_size(req.memory)} of memory "
                    f"but --maxMemory is {readable_size(limits.max_memory)}")
        if limits.max_disk is not None and req.disk > limits.max_disk:
            return f"it asks for {readable_size(req.disk)} of disk but --maxDisk is {readable_size(limits.max_disk)}"
        problem = why_unschedulable(req, self._nodes)
        if problem is None or not self._node_types:
            return problem
        return why_no_node_type_fits(req, self._node_types)

    def _fits(self, req: Requirements) -> bool:
        limits, used = self.limits, self._used
        return (
            (limits.max_cores is None or used["cores"] + req.cores <= limits.max_cores + 1e-9)
            and (limits.max_memory is None or used["memory"] + req.memory <= limits.max_memory)
            and (limits.max_disk is None or used["disk"] + req.disk <= limits.max_disk)
        )

    def _account(self, req: Requirements | None, sign: int) -> None:
        if req is not None:
            self._used["cores"] += sign * req.cores
            self._used["memory"] += sign * req.memory
            self._used["disk"] += sign * req.disk

    def _dependencies(self, specs: list[JobSpec]) -> tuple[dict[str, bytes], dict[str, ray.ObjectRef]]:
        """Every return value the jobs' promises reach (following promised results) that the
        leader holds: those kept as bytes, and Ray references to the others."""
        values: dict[str, bytes] = {}
        refs: dict[str, ray.ObjectRef] = {}
        seen: set[str] = set()
        stack = [dep for spec in specs for dep in spec.promise_deps]
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            found = self._results.get(dep)
            if found is None:
                found = self._services.start_refs.get(dep)
            if isinstance(found, bytes):
                values[dep] = found
            elif found is not None:
                refs[dep] = found
            stack.extend(self._results.promised_by(dep))
        return values, refs

    def _chain_plan(self, job_id: str) -> list[JobSpec]:
        """The successors a worker may run after this job, one after the other, as Toil
        chains jobs: each the lone successor of the one before (the worker checks the rest)."""
        if not self.limits.batching or self.limits.max_job_duration is not None:
            return []
        plan: list[JobSpec] = []
        successor = self.state.lone_successor(job_id)
        while successor is not None and len(plan) < MAX_CHAIN:
            plan.append(self.state.spec(successor))
            successor = self.state.lone_successor(successor)
        return plan

    def _submit(self, job_ids: list[str], req: Requirements | None, resolve_only: bool = False) -> None:
        specs = [self.state.spec(j) for j in job_ids]
        items = [TaskItem(s.id, s.name, s.body, self.state.attempt(s.id), resolve_only) for s in specs]
        planned = self._chain_plan(job_ids[0]) if len(job_ids) == 1 and not resolve_only else []
        values, deps = self._dependencies(specs + planned)
        options: dict[str, Any] = {"num_returns": len(items) + 1}
        if req is None:
            options.update(num_cpus=0.01)
        else:
            options.update(num_cpus=req.cores, memory=req.memory or None, num_gpus=req.gpus or None,
                           resources=placement_resources(req, self._nodes) or None)
        refs = _run_jobs_task.options(**options).remote(self._context_ref, req, items, planned, values, list(deps),
                                                         *deps.values())
        task_id = self._next_task
        self._next_task += 1
        duration = self.limits.max_job_duration
        deadline = time.monotonic() + duration * len(job_ids) if duration else None
        self._inflight[task_id] = _Task(job_ids, list(refs), req, deadline)
        self._reports.jobs_issued(task_id, specs)
        self._issued.update(job_ids)
        self._account(req, +1)
        refs[0].future().add_done_callback(lambda _future, key=task_id: self._completions.put(("task", key)))

    # -- outcomes ----------------------------------------------------------------------------

    def _handle(self, task_id: int) -> None:
        task = self._inflight.pop(task_id)
        self._issued.difference_update(task.job_ids)
        self._account(task.requirements, -1)
        try:
            outcomes: list[Outcome] = ray.get(task.refs[0])
        except RayError as exc:
            self._task_lost(task, exc)
            return
        refs: list[ray.ObjectRef | bytes | None] = [*self._small_results_as_bytes(outcomes, task.refs[1:]),
                                                    *([None] * (len(outcomes) - len(task.refs) + 1))]
        for outcome, ref in zip(outcomes, refs, strict=True):
            if not outcome.already_committed and self.state.is_known(outcome.job_id):
                spec = self.state.spec(outcome.job_id)
                self._reports.attempt_finished(task_id, spec, self.state.attempt(outcome.job_id), outcome)
            if not self.state.is_known(outcome.job_id):
                # Dropped by a checkpoint rerun while it ran: whatever it committed is garbage.
                self.store.uncommit(outcome.job_id)
                continue
            spec = self.state.spec(outcome.job_id)
            if not outcome.ok:
                self._failed(spec, outcome.error, outcome.log)
            elif outcome.requirements is not None:
                spec.requirements = outcome.requirements
                self.state.requeue(outcome.job_id)
            else:
                self._succeeded(outcome, ref)

    def _small_results_as_bytes(self, outcomes: list[Outcome],
                                refs: list[ray.ObjectRef]) -> list[ray.ObjectRef | bytes]:
        """The given jobs' results (``refs``, one per given job), with the bytes in place of the
        references to the small ones someone will read (promises of known jobs, or of the jobs
        the outcome makes), fetched in one call: the references are dropped, so Ray lets those
        values go."""
        results: list[ray.ObjectRef | bytes] = list(refs)
        wanted = [i for i, (outcome, _) in enumerate(zip(outcomes, refs, strict=False))
                  if outcome.ok and outcome.requirements is None and outcome.result_size <= _SMALL_RESULT
                  and (self._results.wants(outcome.job_id)
                       or any(outcome.job_id in spec.promise_deps for spec in outcome.new_specs))]
        if wanted:
            for i, value in zip(wanted, ray.get([refs[i] for i in wanted]), strict=True):
                results[i] = value
        return results

    def _task_lost(self, task: _Task, exc: RayError) -> None:
        """The worker process died (killed, out of memory, node lost) during the task."""
        loss = _loss_of(exc, task.timed_out)
        if isinstance(exc, ObjectLostError):
            # An input went with its node: read every value from the job store from now on.
            self._results.drop_values()
        if loss is Loss.TIME:
            reason = f"it ran longer than --maxJobDuration ({self.limits.max_job_duration:g} s) and was killed"
        elif loss is Loss.MEMORY:
            reason = "it was killed for using more memory than its node had (out of memory)"
        else:
            detail = str(exc).strip()
            reason = "The worker running the job died: " + (detail.splitlines()[0] if detail else type(exc).__name__)
        for job_id in task.job_ids:
            if not self.state.is_known(job_id):
                self.store.uncommit(job_id)
                continue
            record = self.store.read_commit(job_id)
            if record is not None:
                self._succeeded(Outcome.from_record(record), None)
                continue
            spec = self.state.spec(job_id)
            self._reports.attempt_ended(spec, ok=False)
            if loss is Loss.MEMORY and self.limits.double_memory and spec.requirements is not None:
                spec.requirements = replace(spec.requirements, memory=2 * spec.requirements.memory)
                logger.warning("Job %s ran out of memory; its retry asks for %d bytes (--doubleMem)",
                               spec.label(), spec.requirements.memory)
            self._failed(spec, reason, "", loss)

    def _succeeded(self, outcome: Outcome, result_ref: ray.ObjectRef | bytes | None) -> None:
        job_id = outcome.job_id
        spec = self.state.spec(job_id)
        for level, text in outcome.messages:
            logger.log(level, "Got message from job at time %s: %s", time.strftime("%m-%d-%Y %H:%M:%S"), text)
        self._add_jobs(outcome.new_specs, job_id, outcome.children, outcome.followons)
        services = spec.services + outcome.services
        self.state.job_ran(job_id, with_services=bool(services))
        if services:
            self._services.launch(job_id, services)
        self.jobs_run += 0 if outcome.already_committed or outcome.cache == "hit" else 1
        self.cache_hits += outcome.cache == "hit"
        self.cache_misses += outcome.cache == "miss"
        if outcome.cleanup_files:
            self._cleanup[job_id] = outcome.cleanup_files
        if not outcome.already_committed:
            stats = self._kind_time[spec.name]
            stats[0] += 1
            stats[1] += outcome.wall_time
        if self._source is not None:
            # The source owns every job it handed out (they have no successors), and its
            # callback may hand out more: it gets the value now, so the leader need not keep it.
            value = self.resolve_result(job_id, result_ref)
            self._results.job_succeeded(spec, None, outcome.result_deps)
            self._after_state_change()
            self._source.job_succeeded(job_id, value)
        else:
            self._results.job_succeeded(spec, result_ref, outcome.result_deps)
            self._after_state_change()

    def _failed(self, spec: JobSpec, error: str, log: str, loss: Loss | None = None) -> None:
        """An attempt failed (``loss``: it ended without an answer from the job, and how)."""
        report = f"Job {spec.label()} failed (attempt {self.state.attempt(spec.id)} of {self.state.tries}): {error}"
        failure = self.state.job_failed(spec.id) if loss is None else self.state.job_lost(spec.id, loss)
        if failure.action is FailureAction.RERUN:
            limit = "no limit" if self.limits.unlimited_preemptible_retries else f"at most {NODE_LOSSES_PER_JOB}"
            logger.warning("Job %s lost its node; running it again without using a retry (node loss %d, %s): %s",
                           spec.label(), self.state.node_losses(spec.id), limit, error)
            return
        self.store.record_failure(spec.id, f"{report}\n{log}")
        # A notebook shows the log as a block of its own; the log record then names the failure only.
        shown = self._reports.show_failure(report, log)
        block = f"\n{LOG_MARK}\n{log.rstrip()}\n{LOG_MARK}" if log and not shown else ""
        logger.error("%s%s", report, block)
        if failure.action is FailureAction.RETRY:
            if spec.requirements is not None:
                spec.requirements = spec.requirements.with_memory_at_least(self.limits.default_memory)
            logger.warning("Job %s will be retried (%d attempt(s) left)", spec.label(),
                           self.state.remaining_tries(spec.id))
        elif failure.action is FailureAction.CHECKPOINT_RERUN:
            assert failure.checkpoint is not None
            self._forget_checkpoint_subtree(failure.checkpoint, failure.dropped)
            logger.warning("Job %s has no attempts left: rerunning checkpoint %s and its subtree", spec.label(),
                           self.state.spec(failure.checkpoint).label())
        else:
            logger.error("Job %s has no attempts left and is marked as failed", spec.label())
            self._reports.job_failed(spec)
            if self._source is not None:
                self._source.job_failed(spec.id)

    def _forget_checkpoint_subtree(self, checkpoint_id: str, dropped: list[str]) -> None:
        """Make the rerun durable: first uncommit the checkpoint (one atomic delete, after which
        a restart reruns it too), then remove the old subtree's records and cleanup files."""
        self.store.uncommit(checkpoint_id)
        self._results.forget(checkpoint_id)
        self._forget_dropped(dropped)
        self.store.clear_failure(checkpoint_id)

    def _forget_dropped(self, dropped: list[str]) -> None:
        """Jobs removed from the graph: their records, results, files and services go too,
        and tasks still running them are cancelled."""
        dropped_set = set(dropped)
        for task in self._inflight.values():
            if dropped_set.issuperset(task.job_ids):
                ray.cancel(task.refs[0], force=True)
        for job_id in dropped:
            self.store.uncommit(job_id)
            self.store.clear_failure(job_id)
            self._results.forget(job_id)
            for file_id in self._cleanup.pop(job_id, ()):
                self.store.delete_file(file_id)
            if self._services.hosts(job_id):
                self._services.stop_host(job_id)

    def _fail_for_good(self, spec: JobSpec, why: str) -> None:
        message = f"Job {spec.label()} can never run: {why}"
        logger.error(message)
        self.store.record_failure(spec.id, message)
        self.state.mark_permanently_failed(spec.id)
        self._reports.job_failed(spec)
        if self._source is not None:
            self._source.job_failed(spec.id)
