"""The leader's job-graph state machine: pure Python, no Ray, no I/O.

Events go in (jobs added, a job ran, a job failed); the machine answers with the jobs that
became ready and the jobs whose whole subtree finished. Toil's ordering rules live here:

* a child may run once every parent it is a child of has run;
* a follow-on may run once its parent has run *and* every child of that parent has finished
  its whole subtree (children, follow-ons, and theirs, recursively);
* a job's subtree is finished when it ran, its children's subtrees finished, and its
  follow-ons' subtrees finished.

Everything is iterative (a chain of 10,000 follow-ons must not overflow the stack), and a
job's node is dropped as soon as its subtree is finished, so memory tracks unfinished jobs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from toilray.protocol import JobSpec


class FailureAction(Enum):
    RETRY = "retry"
    RERUN = "rerun"  # again, without using a try: the attempt was lost with its node
    CHECKPOINT_RERUN = "checkpoint rerun"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Failure:
    """What became of a failed attempt; for a checkpoint rerun, which jobs were dropped."""

    action: FailureAction
    checkpoint: str | None = None
    dropped: list[str] = field(default_factory=list)


class Loss(Enum):
    """How an attempt ended when its job gave no answer (the task's process or node is gone)."""

    NODE = "node"  # its node died or went silent, or an input it needed was lost with a node
    WORKER = "worker"  # its worker process died on a node that lives on (killed, crashed)
    MEMORY = "memory"  # killed for using more memory than its node had
    TIME = "time"  # killed for running past --maxJobDuration


def uses_a_try(loss: Loss) -> bool:
    """Whether a lost attempt counts against --retryCount: only when the job may be the cause.

    A lost node is not the job's doing (Toil counts preempted jobs apart from failed ones), so
    its jobs run again on other nodes for free, up to a limit of their own (see LeaderState).
    """
    return loss is not Loss.NODE


# Free reruns after lost nodes a job gets (--enableUnlimitedPreemptibleRetries: no limit), so
# that a job that brings its node down does not do so forever.
NODE_LOSSES_PER_JOB = 3


class GraphError(Exception):
    """An event that contradicts the graph (an unknown job, a job finishing twice)."""


class _Node:
    __slots__ = (
        "child_of",
        "children_phase_done",
        "failed",
        "followon_of",
        "node_losses",
        "pending_children",
        "pending_followons",
        "ran",
        "remaining_tries",
        "services",
        "spec",
        "waiting",
    )

    def __init__(self, spec: JobSpec, tries: int) -> None:
        self.spec = spec
        self.remaining_tries = tries
        self.node_losses = 0
        self.waiting = 0
        self.pending_children = 0
        self.pending_followons = 0
        # Tuples, mostly of one parent or none (the shared empty tuple): a list costs each
        # pending job more than the parent's ID does.
        self.child_of: tuple[str, ...] = ()
        self.followon_of: tuple[str, ...] = ()
        self.ran = False
        self.failed = False
        self.children_phase_done = False
        self.services = _NO_SERVICES


# A host job's services: being started, up, being stopped, or failed.
_NO_SERVICES, _STARTING, _UP, _STOPPING, _SERVICES_FAILED = "none", "starting", "up", "stopping", "failed"


class LeaderState:
    def __init__(self, retry_count: int, node_losses: int | None = NODE_LOSSES_PER_JOB) -> None:
        self._tries = retry_count + 1
        self._node_losses = node_losses  # None: no limit
        self._nodes: dict[str, _Node] = {}
        self._ready: deque[str] = deque()
        self._finished_subtrees: list[str] = []
        self._services_to_stop: list[str] = []
        self.finished_count = 0
        self.failed: list[str] = []

    # -- queries -----------------------------------------------------------------------------

    def spec(self, job_id: str) -> JobSpec:
        return self._node(job_id).spec

    def remaining_tries(self, job_id: str) -> int:
        return self._node(job_id).remaining_tries

    @property
    def tries(self) -> int:
        """Attempts each job gets: --retryCount + 1."""
        return self._tries

    def attempt(self, job_id: str) -> int:
        """Which attempt of the job the next (or the one in flight) is, counting from 1."""
        return self._tries - self._node(job_id).remaining_tries + 1

    def is_known(self, job_id: str) -> bool:
        return job_id in self._nodes

    def has_run(self, job_id: str) -> bool:
        """Whether the job's run committed (a job chained by a worker runs before it is issued)."""
        node = self._nodes.get(job_id)
        return node is not None and node.ran

    def unfinished_count(self) -> int:
        """Jobs whose subtree has not finished (including ones that ran and wait for successors)."""
        return len(self._nodes)

    def not_run_count(self) -> int:
        """Jobs that have not run yet (an O(unfinished) count: call it for reports only)."""
        return sum(1 for node in self._nodes.values() if not node.ran)

    def lone_successor(self, job_id: str) -> str | None:
        """The successor that may run right after this job, in the same worker, when the job
        runs without making new ones (Toil's chaining): the job's only child or follow-on,
        waiting for nothing else, and neither job has services."""
        node = self._node(job_id)
        successors = node.spec.children + node.spec.followons
        if len(successors) != 1 or node.spec.services or node.ran:
            return None
        successor = self._nodes[successors[0]]
        if successor.waiting != 1 or successor.ran or successor.spec.services:
            return None
        return successors[0]

    def take_ready(self) -> list[str]:
        # A job can fail for good while still queued here: a worker ran it chained, right after
        # the parent that made it, before the leader ever issued it.
        ready = [j for j in self._ready if j in self._nodes and not self._nodes[j].ran and not self._nodes[j].failed]
        self._ready.clear()
        return ready

    def take_finished_subtrees(self) -> list[str]:
        """Jobs whose whole subtree finished since the last call (their cleanup files may go)."""
        done = self._finished_subtrees
        self._finished_subtrees = []
        return done

    def take_services_to_stop(self) -> list[str]:
        """Host jobs whose successors all finished: their services should stop now."""
        hosts = self._services_to_stop
        self._services_to_stop = []
        return hosts

    def _node(self, job_id: str) -> _Node:
        try:
            return self._nodes[job_id]
        except KeyError:
            raise GraphError(f"Unknown or already finished job {job_id}") from None

    # -- events ------------------------------------------------------------------------------

    def add_jobs(self, specs: Iterable[JobSpec], parent: str | None = None,
                 children: Iterable[str] = (), followons: Iterable[str] = ()) -> None:
        """Add new jobs with their edges; ``parent`` (if any) gains ``children``/``followons``.

        Must be called before ``job_ran(parent)``, as the parent's run is what created them.
        """
        specs = list(specs)
        children, followons = tuple(children), tuple(followons)
        new_ids = {spec.id for spec in specs}
        # Validate everything first, so that a bad event leaves the state untouched.
        if len(new_ids) != len(specs) or any(spec.id in self._nodes for spec in specs):
            raise GraphError("A job was added twice")
        if parent is not None and self._node(parent).ran:
            raise GraphError(f"Job {parent} already ran; it cannot gain successors")
        targets = [t for spec in specs for t in (*spec.children, *spec.followons)] + [*children, *followons]
        for target in targets:
            if target not in new_ids and target not in self._nodes:
                raise GraphError(f"Unknown or already finished job {target}")
        for spec in specs:
            self._nodes[spec.id] = _Node(spec, self._tries)
        for spec in specs:
            self._link(spec.id, spec.children, spec.followons)
        if parent is not None:
            parent_spec = self._node(parent).spec
            parent_spec.children += children
            parent_spec.followons += followons
            self._link(parent, children, followons)
        for spec in specs:
            if self._nodes[spec.id].waiting == 0:
                self._ready.append(spec.id)

    def _link(self, parent_id: str, children: tuple[str, ...], followons: tuple[str, ...]) -> None:
        parent = self._node(parent_id)
        for child_id in children:
            child = self._node(child_id)
            child.waiting += 1
            child.child_of += (parent_id,)
            parent.pending_children += 1
        for followon_id in followons:
            followon = self._node(followon_id)
            followon.waiting += 1
            followon.followon_of += (parent_id,)
            parent.pending_followons += 1

    def job_ran(self, job_id: str, with_services: bool = False) -> None:
        """The job's run committed: release its children, maybe its follow-ons and parents.

        A job ``with_services`` releases nothing until ``services_up`` says they are running.
        """
        node = self._node(job_id)
        if node.ran:
            raise GraphError(f"Job {job_id} finished twice")
        node.ran = True
        if not node.spec.checkpoint:
            # A checkpoint keeps its body: it may have to run again.
            node.spec.body = b""
        self.finished_count += 1
        if with_services:
            node.services = _STARTING
            return
        self._release_children(job_id)

    def _release_children(self, job_id: str) -> None:
        for child_id in self._children_of(job_id):
            self._satisfy(child_id)
        self._propagate(job_id)

    def services_up(self, job_id: str) -> None:
        """All services of a host job run: its successors may start."""
        node = self._node(job_id)
        if node.services != _STARTING:
            raise GraphError(f"Job {job_id} was not starting services")
        node.services = _UP
        self._release_children(job_id)

    def services_stopped(self, job_id: str) -> None:
        """A host's services stopped after its successors finished: its subtree is done."""
        node = self._node(job_id)
        if node.services != _STOPPING:
            raise GraphError(f"Job {job_id} was not stopping services")
        node.services = _NO_SERVICES
        self._propagate(job_id)

    def services_failed(self, job_id: str) -> list[str]:
        """A service of the host failed: the host fails and the jobs that depend on it are
        dropped (never run). Returns the dropped job IDs."""
        node = self._node(job_id)
        node.services = _SERVICES_FAILED
        self.mark_permanently_failed(job_id)
        return self._drop_subtree(job_id)

    def job_failed(self, job_id: str) -> Failure:
        """An attempt failed: retry it, rerun the nearest checkpoint above it, or give up."""
        node = self._node(job_id)
        node.remaining_tries -= 1
        if node.remaining_tries > 0:
            self._ready.append(job_id)
            return Failure(FailureAction.RETRY)
        checkpoint = self._checkpoint_to_rerun(job_id)
        if checkpoint is not None:
            return Failure(FailureAction.CHECKPOINT_RERUN, checkpoint, self._reset_checkpoint(checkpoint))
        self.mark_permanently_failed(job_id)
        return Failure(FailureAction.FAILED)

    def job_lost(self, job_id: str, loss: Loss) -> Failure:
        """An attempt ended without an answer: rerun it for free when ``uses_a_try`` says the
        job was not the cause and its free reruns are not used up; else as ``job_failed``."""
        node = self._node(job_id)
        if not uses_a_try(loss) and (self._node_losses is None or node.node_losses < self._node_losses):
            node.node_losses += 1
            self._ready.append(job_id)
            return Failure(FailureAction.RERUN)
        return self.job_failed(job_id)

    def node_losses(self, job_id: str) -> int:
        """How many of the job's attempts were lost with their node."""
        return self._node(job_id).node_losses

    def _checkpoint_to_rerun(self, job_id: str) -> str | None:
        """The nearest checkpoint that ran, has this job in its subtree, and has tries left."""
        seen: set[str] = set()
        frontier = [job_id]
        while frontier:
            current = frontier.pop(0)
            node = self._nodes.get(current)
            if node is None or current in seen:
                continue
            seen.add(current)
            if current != job_id and node.spec.checkpoint and node.ran and node.remaining_tries > 1:
                return current
            frontier.extend(node.child_of)
            frontier.extend(node.followon_of)
        return None

    def _reset_checkpoint(self, checkpoint_id: str) -> list[str]:
        """Forget the checkpoint's whole subtree and make it ready to run again.

        Returns the IDs of the jobs that were dropped (their records are now garbage).
        """
        checkpoint = self._nodes[checkpoint_id]
        dropped = self._drop_subtree(checkpoint_id)
        checkpoint.remaining_tries -= 1
        checkpoint.ran = False
        checkpoint.children_phase_done = False
        checkpoint.pending_children = checkpoint.pending_followons = 0
        checkpoint.spec.children = ()
        checkpoint.spec.followons = ()
        self.finished_count -= 1
        self._ready.append(checkpoint_id)
        return dropped

    def mark_permanently_failed(self, job_id: str) -> None:
        node = self._node(job_id)
        node.remaining_tries = 0
        if not node.failed:
            node.failed = True
            self.failed.append(job_id)

    def requeue(self, job_id: str) -> None:
        """Make a job ready again without using a try (e.g. after resolving its requirements)."""
        self._node(job_id)
        self._ready.append(job_id)

    def _drop_subtree(self, job_id: str) -> list[str]:
        """Forget every successor of ``job_id`` (recursively); return their IDs."""
        node = self._nodes[job_id]
        dropped: list[str] = []
        stack = list(node.spec.children) + list(node.spec.followons)
        while stack:
            current = stack.pop()
            removed = self._nodes.pop(current, None)
            if removed is None:
                continue
            dropped.append(current)
            if removed.failed:
                self.failed.remove(current)
            stack.extend(removed.spec.children)
            stack.extend(removed.spec.followons)
        dropped_set = set(dropped)
        self._ready = deque(j for j in self._ready if j not in dropped_set)
        return dropped

    # -- propagation -------------------------------------------------------------------------

    def _children_of(self, job_id: str) -> tuple[str, ...]:
        return self._nodes[job_id].spec.children

    def _satisfy(self, job_id: str) -> None:
        node = self._nodes[job_id]
        node.waiting -= 1
        if node.waiting == 0:
            self._ready.append(job_id)

    def _propagate(self, start: str) -> None:
        """Walk up from ``start``: complete children phases and subtrees as far as they go."""
        work = [start]
        while work:
            job_id = work.pop()
            node = self._nodes.get(job_id)
            if node is None or not node.ran or node.services in (_STARTING, _STOPPING, _SERVICES_FAILED):
                continue
            if not node.children_phase_done and node.pending_children == 0:
                node.children_phase_done = True
                for followon_id in node.spec.followons:
                    self._satisfy(followon_id)
            if node.children_phase_done and node.pending_followons == 0:
                if node.services == _UP:
                    node.services = _STOPPING
                    self._services_to_stop.append(job_id)
                    continue
                del self._nodes[job_id]
                self._finished_subtrees.append(job_id)
                for parent_id in node.child_of:
                    self._nodes[parent_id].pending_children -= 1
                    work.append(parent_id)
                for parent_id in node.followon_of:
                    self._nodes[parent_id].pending_followons -= 1
                    work.append(parent_id)
