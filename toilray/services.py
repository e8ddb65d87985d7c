"""The leader's side of services (``Job.Service``): starting, polling and stopping the Ray
actors that host them (``toilray.worker.ServiceHost`` is the actor's side).

A host job's services start after its ``run`` (parents before sub-services), each in an
actor holding the service's resources. Once all are up the host's successors may run; the
value ``start`` returned is what the ``addService`` promise resolves to. ``check`` is polled
every ``--servicePollingInterval``; returning False ends a service early (successfully),
raising fails it. When the host's successors have all finished, the services are stopped
(sub-services first) and their actors killed.

A service whose actor dies (its process killed, its node lost) fails its host job, as a service
that raises does (Toil's rule): a call left waiting on every actor (``until_stopped``) tells
the leader at once, whatever the polling interval. It is not started again elsewhere: the jobs
using it hold what its ``start`` returned (an address, say), which a new instance would not
honour.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayError

from toilray.protocol import ServiceSpec
from toilray.requirements import Requirements
from toilray.worker import ServiceHost

logger = logging.getLogger("toilray.leader")


def room_beside_services(node_cpus: Sequence[float], total_cpus: float, reserved: float) -> float:
    """The most cores a job may find free on one node while services hold ``reserved`` cores of
    the cluster's ``total_cpus``: where each service runs is Ray's to know, so as if they sat on the
    other nodes. (The services' cores taken from the largest node alone made runs on nodes of one
    core each, a service of 0.1 core beside their jobs of 1, fail as deadlocked once --deadlockWait
    had passed.)"""
    return min(max(node_cpus, default=0.0), total_cpus - reserved)


@functools.cache
def _service_actor() -> Any:
    """The actor class of services, made at first use, not at import: making one draws from Ray's
    ID generator, whose state a fork would then copy into every child of the CWL and WDL runners'
    fork server (``toilray.forkserver``), and their Ray drivers would all get the same worker ID.

    Three calls at once: check() is polled while a long start() or stop() may still run, and
    until_stopped() waits all along. Ray's type stubs list only task options for ray.remote(...),
    not actor options such as max_concurrency."""
    return ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=3)(  # type: ignore[call-overload]
        ServiceHost)


@dataclass
class _Running:
    spec: ServiceSpec
    host: str
    actor: Any = None
    phase: str = "waiting"  # waiting -> starting -> up -> stopping -> stopped
    next_check: float = 0.0
    check_ref: Any = None
    stop_ref: Any = None
    node_ref: Any = None  # ServiceHost.node(): where the actor runs
    watch_ref: Any = None  # ServiceHost.until_stopped(); None while waiting to call it again
    next_watch: float = 0.0


@dataclass
class _Host:
    services: list[str]
    failed: bool = False
    stop_requested: bool = False


# Seconds before asking again whether an actor that Ray says is out of reach is still there.
_REWATCH_DELAY = 1.0

# What ServiceManager tells the leader: ("up" | "failed" | "stopped", host job ID, why it
# failed or "").
HostEvent = tuple[str, str, str]


class ServiceManager:
    """Starts, polls and stops the services of host jobs.

    Completions of actor calls arrive through ``notify`` (on Ray's callback thread) and are
    handed back by the leader's loop to :meth:`handle`, so all state changes happen there.
    """

    def __init__(self, context_ref: Any, poll_interval: float, max_services: tuple[int, int],
                 notify: Callable[[tuple[str, str]], None],
                 placement: Callable[[Requirements], dict[str, float]]) -> None:
        self._context_ref = context_ref
        # The custom resources that keep a service off nodes it must not use (as for jobs).
        self._placement = placement
        self._poll = poll_interval
        # As in Toil: at most this many services that are not preemptible, and at most this many
        # preemptible ones (which may run on preemptible nodes), at once.
        self._max, self._max_preemptible = max_services
        self._notify = notify
        self._services: dict[str, _Running] = {}
        self._hosts: dict[str, _Host] = {}
        self._queue: deque[str] = deque()
        self.start_refs: dict[str, Any] = {}

    # -- queries -----------------------------------------------------------------------------

    def active(self) -> bool:
        return bool(self._hosts)

    def hosts(self, host: str) -> bool:
        return host in self._hosts

    def settled(self) -> bool:
        """Whether every service is up or stopped: none is waiting, starting or stopping (after
        which its host's successors, or what follows its host, might run)."""
        return all(s.phase in ("up", "stopped") for s in self._services.values())

    def host_count(self) -> int:
        """Host jobs whose services are starting, up or stopping."""
        return len(self._hosts)

    def running_count(self) -> int:
        return sum(1 for s in self._services.values() if s.phase in ("starting", "up", "stopping"))

    def _room_for(self, preemptible: bool) -> bool:
        running = sum(1 for s in self._services.values()
                      if s.phase in ("starting", "up", "stopping") and s.spec.requirements.preemptible == preemptible)
        return running < (self._max_preemptible if preemptible else self._max)

    def reserved_cores(self) -> float:
        return sum(s.spec.requirements.cores for s in self._services.values()
                   if s.phase in ("starting", "up", "stopping"))

    def next_wakeup(self) -> float | None:
        checks = [s.next_check for s in self._services.values() if s.phase == "up" and s.check_ref is None]
        checks += [s.next_watch for s in self._services.values()
                   if s.watch_ref is None and s.phase in ("starting", "up")]
        return max(0.0, min(checks) - time.monotonic()) if checks else None

    # -- commands ----------------------------------------------------------------------------

    def launch(self, host: str, specs: tuple[ServiceSpec, ...]) -> None:
        self._hosts[host] = _Host([s.id for s in specs])
        for spec in specs:
            self._services[spec.id] = _Running(spec, host)
            if spec.parent is None:
                self._queue.append(spec.id)
        self._start_queued()

    def stop_host(self, host: str) -> list[HostEvent]:
        """The host's successors finished (or a service failed): stop its services."""
        self._hosts[host].stop_requested = True
        return self._stop_pass(host)

    def stop_everything(self) -> None:
        for running in self._services.values():
            if running.actor is not None:
                ray.kill(running.actor)
        self._services.clear()
        self._hosts.clear()
        self._queue.clear()

    def poll(self) -> None:
        now = time.monotonic()
        for service_id, running in self._services.items():
            if running.phase == "up" and running.check_ref is None and running.next_check <= now:
                running.check_ref = running.actor.check.remote()
                self._watch(running.check_ref, ("service-check", service_id))
            if running.phase in ("starting", "up") and running.watch_ref is None and running.next_watch <= now:
                self._watch_actor(running)

    # -- events ------------------------------------------------------------------------------

    def handle(self, kind: str, service_id: str) -> list[HostEvent]:
        running = self._services.get(service_id)
        if running is None:
            return []
        if kind == "service-start":
            return self._started(running)
        if kind == "service-check":
            return self._checked(running)
        if kind == "service-watch":
            return self._watched(running)
        return self._stopped(running)

    def _started(self, running: _Running) -> list[HostEvent]:
        if running.phase != "starting":
            return []  # its actor's death came first
        host = self._hosts[running.host]
        try:
            ray.get(self.start_refs[running.spec.id])
        except RayError as exc:
            why = self._why_gone(running, exc) or f"start() failed: {_first_line(exc)}"
            running.phase = "stopped"
            ray.kill(running.actor)
            return self._fail(running, why)
        running.phase = "up"
        running.next_check = time.monotonic() + self._poll
        logger.info("Service %s is up", running.spec.name)
        for child in self._services.values():
            if child.spec.parent == running.spec.id and child.phase == "waiting":
                self._queue.appendleft(child.spec.id)
        self._start_queued()
        if host.stop_requested:
            return self._stop_pass(running.host)
        if all(self._services[s].phase in ("up", "stopping", "stopped") for s in host.services):
            return [("up", running.host, "")] if not host.failed else []
        return []

    def _checked(self, running: _Running) -> list[HostEvent]:
        ref, running.check_ref = running.check_ref, None
        if running.phase != "up":
            return []
        try:
            alive = ray.get(ref)
        except ActorUnavailableError:
            # Out of reach for now: its until_stopped() call tells whether it is gone.
            running.next_check = time.monotonic() + self._poll
            return []
        except RayError as exc:
            return self._fail(running, self._why_gone(running, exc) or f"check() failed: {_first_line(exc)}")
        if alive:
            running.next_check = time.monotonic() + self._poll
        else:
            logger.info("Service %s ended on its own (check() returned False)", running.spec.name)
            self._stop(running)
        return []

    def _watched(self, running: _Running) -> list[HostEvent]:
        """The actor's until_stopped() call ended: fine after a stop; else the actor died."""
        if running.phase not in ("starting", "up"):
            return []
        why = "its actor died"
        try:
            ray.get(running.watch_ref)
        except ActorUnavailableError:
            # Its node may be lost, or the network only slow: ask again shortly, until Ray
            # answers that the actor is dead or the call waits again.
            running.watch_ref = None
            running.next_watch = time.monotonic() + _REWATCH_DELAY
            return []
        except RayError as exc:
            why = self._why_gone(running, exc) or f"{why}: {_first_line(exc)}"
        running.phase = "stopped"
        return self._fail(running, why)

    def _why_gone(self, running: _Running, exc: RayError) -> str | None:
        """Why the actor is gone, if ``exc`` says it is (and not that the service raised)."""
        if not isinstance(exc, RayActorError):
            return None
        ready, _ = ray.wait([running.node_ref], timeout=0)
        try:
            node_id, name = ray.get(ready[0]) if ready else (None, None)
        except RayError:
            node_id, name = None, None
        if node_id is not None and not any(n["NodeID"] == node_id and n.get("Alive") for n in ray.nodes()):
            return f"it was lost with its node ({name})"
        return f"its actor died: {_first_line(exc)}"

    def _stopped(self, running: _Running) -> list[HostEvent]:
        try:
            ray.get(running.stop_ref)
        except RayError as exc:
            logger.warning("Service %s did not stop cleanly: %s", running.spec.name, _first_line(exc))
        ray.kill(running.actor)
        running.phase = "stopped"
        self._start_queued()
        return self._stop_pass(running.host) if self._hosts[running.host].stop_requested else []

    # -- internals ---------------------------------------------------------------------------

    def _watch(self, ref: Any, event: tuple[str, str]) -> None:
        ref.future().add_done_callback(lambda _f: self._notify(event))

    def _start_queued(self) -> None:
        held: deque[str] = deque()
        while self._queue:
            running = self._services[self._queue.popleft()]
            req = running.spec.requirements
            if not self._room_for(req.preemptible):
                held.append(running.spec.id)  # the other kind may still have room
                continue
            running.actor = _service_actor().options(
                num_cpus=req.cores, memory=req.memory or None, num_gpus=req.gpus or None,
                resources=self._placement(req) or None,
            ).remote(self._context_ref, running.spec.name)
            ref = running.actor.start.remote(running.spec.body)
            running.node_ref = running.actor.node.remote()
            self._watch_actor(running)
            running.phase = "starting"
            self.start_refs[running.spec.id] = ref
            self._watch(ref, ("service-start", running.spec.id))
        self._queue = held

    def _watch_actor(self, running: _Running) -> None:
        running.watch_ref = running.actor.until_stopped.remote()
        self._watch(running.watch_ref, ("service-watch", running.spec.id))

    def _stop_pass(self, host_id: str) -> list[HostEvent]:
        """Stop every service of the host that can stop now; report when all have."""
        host = self._hosts[host_id]
        for service_id in host.services:
            running = self._services[service_id]
            children = [s for s in self._services.values() if s.spec.parent == service_id]
            if running.phase == "waiting":
                running.phase = "stopped"
                if service_id in self._queue:
                    self._queue.remove(service_id)
            elif running.phase == "up" and all(c.phase == "stopped" for c in children):
                self._stop(running)
        if all(self._services[s].phase == "stopped" for s in host.services):
            for service_id in host.services:
                del self._services[service_id]
                self.start_refs.pop(service_id, None)
            del self._hosts[host_id]
            return [("stopped", host_id, "")]
        return []

    def _stop(self, running: _Running) -> None:
        running.phase = "stopping"
        running.stop_ref = running.actor.stop.remote()
        self._watch(running.stop_ref, ("service-stop", running.spec.id))

    def _fail(self, running: _Running, why: str) -> list[HostEvent]:
        logger.error("Service %s of job %s failed: %s", running.spec.name, running.host[:8], why)
        host = self._hosts[running.host]
        events: list[HostEvent] = [] if host.failed else [("failed", running.host,
                                                           f"its service {running.spec.name} failed: {why}")]
        host.failed = True
        return events + self.stop_host(running.host)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
