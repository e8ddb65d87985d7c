"""Toil's job API: ``Job``, function-wrapping jobs, promises and the graph checks."""

from __future__ import annotations

import inspect
import logging
import os
import uuid
from argparse import ArgumentParser, Namespace
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from toilray import serialize
from toilray.callCache import CallIdentity, codeIdentity
from toilray.exceptions import (
    JobException,
    JobGraphDeadlockException,
    JobPicklingException,
    JobPromiseConstraintError,
)
from toilray.protocol import JobSpec, ServiceSpec, job_label
from toilray.requirements import REQUIREMENT_KEYS, TOIL_DEFAULTS, Requirements, parse_requirement

if TYPE_CHECKING:
    from toilray.fileStores.fileStore import FileStore

logger = logging.getLogger(__name__)

J = TypeVar("J", bound="Job")

# Attributes that describe the job's place in the graph or its current run. They are not part
# of the pickled body: the graph travels as JobSpec edges, a run gets fresh ones, and the
# run's default requirements come with the worker context (see load_job).
_TRANSIENT = ("_children", "_followOns", "_directPredecessors", "_fileStore", "_tempDir", "_saved", "_services",
              "_defaults")


class Promise:
    """The future return value of a job, or a part of it (``job.rv(*path)``)."""

    def __init__(self, job: Job | Job.Service, path: tuple[Any, ...] = ()) -> None:
        self.job: Job | Job.Service | None = job
        self._job_id = job.jobStoreID
        self._path = path

    @classmethod
    def _unresolved(cls, job_id: str, path: tuple[Any, ...]) -> Promise:
        promise = cls.__new__(cls)
        promise.job = None
        promise._job_id = job_id
        promise._path = path
        return promise

    def __reduce__(self) -> tuple[Any, ...]:
        serialize.note_promise(self._job_id, self.job)
        return resolve_promise, (self._job_id, self._path)

    def __repr__(self) -> str:
        return f"Promise(job={self._job_id[:8]}, path={self._path!r})"


def resolve_promise(job_id: str, path: tuple[Any, ...]) -> Any:
    """Unpickling target of a Promise: the promised value inside a PromiseContext, else a
    promise again (a body unpickled outside a run keeps its promises)."""
    context = serialize.active_context()
    if context is None:
        return Promise._unresolved(job_id, tuple(path))
    return context.resolve(job_id, path)


def _identity(value: Any) -> Any:
    return value


class PromisedRequirement:
    """A resource requirement taken from promises: ``PromisedRequirement(fn, *args)``.

    ``PromisedRequirement(job.rv())`` uses the promised value itself; with a callable, the
    requirement is ``fn(*args)`` once the promises in ``args`` are resolved.
    """

    def __init__(self, valueOrCallable: Any, *args: Any) -> None:
        if callable(valueOrCallable):
            self._func = valueOrCallable
            self._args = list(args)
        else:
            if args:
                raise JobException("A PromisedRequirement without a function takes exactly one value")
            self._func = _identity
            self._args = [valueOrCallable]

    def getValue(self) -> Any:
        return self._func(*self._args)

    @staticmethod
    def convertPromises(kwargs: dict[str, Any]) -> bool:
        """Turn bare Promises in requirement kwargs into PromisedRequirements; say if any exist."""
        found = False
        for key in REQUIREMENT_KEYS:
            value = kwargs.get(key)
            if isinstance(value, Promise):
                kwargs[key] = PromisedRequirement(value)
                found = True
            elif isinstance(value, PromisedRequirement):
                found = True
        return found


class TemporaryID:
    """Toil's placeholder ID of a job description not yet in a job store; unique, hashable."""

    def __init__(self) -> None:
        self._value = uuid.uuid4()

    def __repr__(self) -> str:
        return f"TemporaryID({self._value})"

    __str__ = __repr__

    def __hash__(self) -> int:
        return hash(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TemporaryID) and self._value == other._value


class Requirer:
    """Requirements (``memory``, ``cores``, ``disk``, ``accelerators``, ``preemptible``) in any of
    Toil's spellings, read back as numbers; one not given is the run's default (``assignConfig``),
    or Toil's built-in one outside a run."""

    def __init__(self, requirements: Mapping[str, Any]) -> None:
        self._requirements: dict[str, Any] = {}
        for key, value in requirements.items():
            if value is not None:
                self._requirements[key] = self._check_requirement(key, value)
        self._defaults: Requirements | None = None

    @staticmethod
    def _check_requirement(key: str, value: Any) -> Any:
        if isinstance(value, Promise):
            return PromisedRequirement(value)
        if isinstance(value, PromisedRequirement):
            return value
        return parse_requirement(key, value)

    def _requirement(self, key: str) -> Any:
        """What is asked for: the value given (a promised one resolved), else the run's default
        (Toil's built-in one when there is no run yet)."""
        value = self._requirements.get(key)
        if value is None:
            return getattr(self._defaults or TOIL_DEFAULTS, key)
        if isinstance(value, PromisedRequirement):
            return parse_requirement(key, value.getValue())
        return value

    def _has_promised_requirements(self) -> bool:
        return any(isinstance(v, PromisedRequirement) for v in self._requirements.values())

    def _resolved_requirements(self) -> Requirements:
        return Requirements(**{key: self._requirement(key) for key in REQUIREMENT_KEYS})

    def assignConfig(self, config: Any) -> None:
        """Take the defaults of requirements not given from a ``Config`` (``--defaultMemory``, ...)."""
        self._defaults = config.defaults

    @property
    def requirements(self) -> dict[str, Any]:
        """The requirements given explicitly, parsed."""
        return dict(self._requirements)

    def requirements_string(self) -> str:
        return self._resolved_requirements().describe()

    @property
    def memory(self) -> int:
        return self._requirement("memory")

    @memory.setter
    def memory(self, value: Any) -> None:
        self._requirements["memory"] = self._check_requirement("memory", value)

    @property
    def cores(self) -> float:
        return self._requirement("cores")

    @cores.setter
    def cores(self, value: Any) -> None:
        self._requirements["cores"] = self._check_requirement("cores", value)

    @property
    def disk(self) -> int:
        return self._requirement("disk")

    @disk.setter
    def disk(self, value: Any) -> None:
        self._requirements["disk"] = self._check_requirement("disk", value)

    @property
    def accelerators(self) -> list[dict[str, Any]]:
        return list(self._requirement("accelerators"))

    @accelerators.setter
    def accelerators(self, value: Any) -> None:
        self._requirements["accelerators"] = self._check_requirement("accelerators", value)

    @property
    def preemptible(self) -> bool:
        return self._requirement("preemptible")

    @preemptible.setter
    def preemptible(self, value: Any) -> None:
        self._requirements["preemptible"] = self._check_requirement("preemptible", value)

    preemptable = preemptible


class JobDescription(Requirer):
    """What the leader knows of a job in Toil: its requirements and names, and its ID
    (a ``TemporaryID`` until it is stored). toilray's leader works from ``JobSpec``s; this is
    for scripts that build or inspect descriptions (``Job.description``)."""

    def __init__(self, requirements: Mapping[str, Any], jobName: str, unitName: str | None = "",
                 displayName: str | None = "", local: bool | None = None, files: Any = None) -> None:
        super().__init__(requirements)
        self.local = bool(local)
        self.jobName = _text(jobName)
        self.unitName = _text(unitName)
        self.displayName = _text(displayName)
        self.jobStoreID: str | TemporaryID = TemporaryID()

    def __str__(self) -> str:
        return job_label(self.jobName, self.unitName, str(self.jobStoreID))


def _text(name: str | bytes | None) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", errors="replace")
    return name or ""


class Job(Requirer):
    """A unit of work. Override ``run(fileStore)``; its return value is what ``rv()`` promises."""

    def __init__(
        self,
        memory: int | str | None = None,
        cores: int | float | str | None = None,
        disk: int | str | None = None,
        accelerators: Any = None,
        preemptible: bool | str | int | None = None,
        preemptable: bool | str | int | None = None,
        unitName: str | None = "",
        checkpoint: bool | None = False,
        displayName: str | None = "",
        descriptionClass: Any = None,
        *,
        jobStoreID: str | None = None,
        cache: bool = False,
    ) -> None:
        """Toil's arguments; ``jobStoreID`` (toilray's) gives a job a chosen, stable ID, as the
        CWL runner does so that a restart recognises invocations that already ran; ``cache``
        (toilray's) lets a run with ``--callCache`` take this job's result from the call cache
        (``toilray.callCache``) instead of running it when the same call ran before."""
        if preemptible is None and preemptable is not None:
            preemptible = preemptable
        super().__init__({"memory": memory, "cores": cores, "disk": disk, "accelerators": accelerators,
                          "preemptible": preemptible})
        self._jobStoreID = jobStoreID or uuid.uuid4().hex
        self._jobName = self._default_job_name()
        self._unitName = unitName or ""
        self._displayName = displayName or self._jobName
        self._checkpoint = bool(checkpoint)
        self._cache = bool(cache)
        self._init_transient()

    # -- internals ---------------------------------------------------------------------------

    def _init_transient(self) -> None:
        self._children: list[Job] = []
        self._followOns: list[Job] = []
        self._directPredecessors: list[Job] = []
        self._fileStore: FileStore | None = None
        self._tempDir: str | None = None
        self._saved = False
        self._services: list[Job.Service] = []
        # The run's default requirements: set when the job is described for a run or loaded by
        # a worker, and handed on to the successors added to it.
        self._defaults: Requirements | None = None

    def _default_job_name(self) -> str:
        return type(self).__name__

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in _TRANSIENT:
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_transient()

    def _successors(self) -> list[Job]:
        return self._children + self._followOns

    def _run(self, jobGraph: Any = None, fileStore: FileStore | None = None, **kwargs: Any) -> Any:
        """What the worker calls, with Toil's arguments (``jobGraph`` is always None, as Toil's
        worker passes it), so that subclasses overriding it as for Toil keep working."""
        return self.run(self.fileStore if fileStore is None else fileStore)

    # -- properties --------------------------------------------------------------------------

    @property
    def jobStoreID(self) -> str:
        return self._jobStoreID

    @property
    def jobName(self) -> str:
        return self._jobName

    @property
    def unitName(self) -> str:
        return self._unitName

    @property
    def displayName(self) -> str:
        return self._displayName

    @property
    def description(self) -> JobDescription:
        """This job as Toil's leader would describe it: requirements, names and its ID."""
        description = JobDescription(self._requirements, self._jobName, self._unitName, self._displayName)
        description._defaults = self._defaults
        description.jobStoreID = self._jobStoreID
        return description

    @property
    def checkpoint(self) -> bool:
        return self._checkpoint

    @property
    def cache(self) -> bool:
        """Whether a run with ``--callCache`` may take this job's result from the call cache."""
        return self._cache

    def callIdentity(self) -> CallIdentity:
        """What determines this job's result, for the call cache: its class's code and its
        attributes (files in them count by content). Override it when a result depends on
        something else, or on less."""
        state = self.__getstate__()
        for key in ("_jobStoreID", "_jobName", "_unitName", "_displayName", "_requirements", "_cache",
                    "_checkpoint"):
            state.pop(key, None)
        return CallIdentity("python", codeIdentity(type(self)), state, self._cache_environment())

    def _cache_environment(self) -> Any:
        # Accelerators can change a result (GPU code paths); cores, memory and disk do not.
        return {"accelerators": self.accelerators}

    @property
    def fileStore(self) -> FileStore:
        if self._fileStore is None:
            raise JobException("job.fileStore is only available while the job runs")
        return self._fileStore

    @property
    def tempDir(self) -> str:
        """A temporary directory for this job, removed when it ends (same path on every access)."""
        if self._tempDir is None:
            self._tempDir = self.fileStore.getLocalTempDir()
        return self._tempDir

    # -- the user's override -----------------------------------------------------------------

    def run(self, fileStore: FileStore) -> Any:
        """Override this. A bare Job does nothing and returns None."""
        return None

    # -- building the graph ------------------------------------------------------------------

    def addChild(self, childJob: J) -> J:
        """``childJob`` runs after this job's ``run``; children run in parallel."""
        self._check_can_add(childJob)
        self._children.append(childJob)
        childJob._directPredecessors.append(self)
        return childJob

    def addFollowOn(self, followOnJob: J) -> J:
        """``followOnJob`` runs after this job, its children and all their successors."""
        self._check_can_add(followOnJob)
        self._followOns.append(followOnJob)
        followOnJob._directPredecessors.append(self)
        return followOnJob

    def _check_can_add(self, job: Job) -> None:
        if not isinstance(job, Job):
            raise JobException(f"Only jobs can be added as successors, not {type(job).__name__}")
        if job is self:
            raise JobGraphDeadlockException(f"Job {self._jobName} cannot be its own successor")
        if job._saved:
            raise JobException(f"Job {job._jobName} was already scheduled and cannot gain a new predecessor")
        # A new successor takes on this job's run defaults, so that ``self.memory`` inside the
        # run() that made it reports the run's --defaultMemory, not Toil's.
        if job._defaults is None:
            job._defaults = self._defaults

    def addChildFn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionWrappingJob:
        return self.addChild(FunctionWrappingJob(fn, *args, **kwargs))

    def addFollowOnFn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionWrappingJob:
        return self.addFollowOn(FunctionWrappingJob(fn, *args, **kwargs))

    def addChildJobFn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFunctionWrappingJob:
        return self.addChild(JobFunctionWrappingJob(fn, *args, **kwargs))

    def addFollowOnJobFn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFunctionWrappingJob:
        return self.addFollowOn(JobFunctionWrappingJob(fn, *args, **kwargs))

    def addService(self, service: Job.Service, parentService: Job.Service | None = None) -> Promise:
        """Run ``service`` while this job's successors run; the promise is ``start``'s value."""
        if not isinstance(service, Job.Service):
            raise JobException(f"addService needs a Job.Service, not {type(service).__name__}")
        if self.hasService(service):
            raise JobException("That service was already added to this job")
        if parentService is not None:
            if not self.hasService(parentService):
                raise JobException("The parent service must be a service of this job")
            parentService._childServices.append(service)
        else:
            self._services.append(service)
        return Promise(service, ())

    def hasService(self, service: Job.Service) -> bool:
        return any(s is service for s in _all_services(self._services))

    def hasChild(self, childJob: Job) -> bool:
        return any(c is childJob for c in self._children)

    def hasFollowOn(self, followOnJob: Job) -> bool:
        return any(f is followOnJob for f in self._followOns)

    def hasPredecessor(self, job: Job) -> bool:
        return any(p is job for p in self._directPredecessors)

    @staticmethod
    def wrapFn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionWrappingJob:
        return FunctionWrappingJob(fn, *args, **kwargs)

    @staticmethod
    def wrapJobFn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFunctionWrappingJob:
        return JobFunctionWrappingJob(fn, *args, **kwargs)

    def encapsulate(self, name: str | None = None) -> EncapsulatedJob:
        return EncapsulatedJob(self, unitName=name)

    def rv(self, *path: Any) -> Promise:
        """A promise of this job's return value, indexed by ``path`` (keys, indices, a slice)."""
        for i, step in enumerate(path):
            if isinstance(step, slice) and i != len(path) - 1:
                raise JobException("A slice may only be the last element of an rv() path")
        return Promise(self, tuple(path))

    def defer(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``function(*args, **kwargs)`` after this attempt ends, even if its process dies.

        It runs on the node that ran the attempt, possibly more than once: make it idempotent.
        """
        self.fileStore.deferred.register(function, args, kwargs)

    def log(self, text: str, level: int = logging.INFO) -> None:
        """Log ``text`` on the worker and in the leader's log."""
        if self._fileStore is not None:
            self._fileStore.logToMaster(text, level)
        else:
            logger.log(level, text)

    # -- graph checks (Toil's names) ---------------------------------------------------------

    def checkJobGraphForDeadlocks(self) -> None:
        self.checkJobGraphConnected()
        self.checkJobGraphAcylic()
        self.checkNewCheckpointsAreLeafVertices()

    def getRootJobs(self) -> set[Job]:
        return {job for job in _connected_jobs(self) if not job._directPredecessors}

    def checkJobGraphConnected(self) -> None:
        roots = self.getRootJobs()
        if len(roots) != 1:
            names = ", ".join(sorted(j._jobName for j in roots)) or "none"
            raise JobGraphDeadlockException(
                f"The job graph must have exactly one root job, but it has {len(roots)}: {names}"
            )

    def checkJobGraphAcylic(self) -> None:
        """Fail on a cycle, counting the edges a follow-on implies from its parent's subtree."""
        jobs = _connected_jobs(self)
        edges: dict[int, set[int]] = {id(j): {id(s) for s in j._successors()} for j in jobs}
        by_id = {id(j): j for j in jobs}
        for job in jobs:
            for followOn in job._followOns:
                for descendant in _descendants_via_children(job):
                    edges[id(descendant)].add(id(followOn))
        cycle = _find_cycle(edges)
        if cycle:
            names = " -> ".join(by_id[i]._jobName for i in cycle)
            raise JobGraphDeadlockException(f"The job graph has a cycle: {names}")

    checkJobGraphAcyclic = checkJobGraphAcylic

    def checkNewCheckpointsAreLeafVertices(self) -> None:
        # A root may be a checkpoint with successors: it is the pre-existing job they hang off.
        for job in _connected_jobs(self):
            if not job._saved and job._checkpoint and job._successors() and job._directPredecessors:
                raise JobGraphDeadlockException(
                    f"Checkpoint job {job._jobName} must be a leaf when it is defined; "
                    "it may only add successors inside its own run()"
                )

    checkNewCheckpointsAreLeaves = checkNewCheckpointsAreLeafVertices
    checkNewCheckpointsAreCutVertices = checkNewCheckpointsAreLeafVertices

    def getTopologicalOrderingOfJobs(self) -> list[Job]:
        """The new (not yet scheduled) jobs of this graph, each after all its predecessors."""
        return _topological([j for j in _connected_jobs(self) if not j._saved])

    # -- Job.Service -------------------------------------------------------------------------

    class Service:
        """A long-running helper (a database, a server) that a job's successors use.

        ``start(job)`` returns a picklable value (how to reach the service), which the
        promise from ``addService`` resolves to; ``check()`` returning False ends the service
        successfully and raising fails it; ``stop(job)`` shuts it down.
        """

        def __init__(self, memory: Any = None, cores: Any = None, disk: Any = None, accelerators: Any = None,
                     preemptible: Any = None, unitName: str | None = None) -> None:
            self._requirements: dict[str, Any] = {}
            for key, value in (("memory", memory), ("cores", cores), ("disk", disk),
                               ("accelerators", accelerators), ("preemptible", preemptible)):
                if value is not None:
                    self._requirements[key] = parse_requirement(key, value)
            self._serviceID = uuid.uuid4().hex
            self.unitName = unitName or ""
            self._childServices: list[Job.Service] = []

        @property
        def jobStoreID(self) -> str:
            return self._serviceID

        def __getstate__(self) -> dict[str, Any]:
            state = self.__dict__.copy()
            state["_childServices"] = []
            return state

        def addChild(self, service: Job.Service) -> Job.Service:
            """``service`` starts after this one is up (a sub-service)."""
            self._childServices.append(service)
            return service

        def start(self, job: Job) -> Any:
            raise NotImplementedError("A Job.Service must implement start(job)")

        def stop(self, job: Job) -> None:
            raise NotImplementedError("A Job.Service must implement stop(job)")

        def check(self) -> bool:
            return True

    # -- Job.Runner --------------------------------------------------------------------------

    class Runner:
        """Toil's helpers for scripts: argument parsing and starting a workflow."""

        @staticmethod
        def getDefaultArgumentParser(jobstore_as_flag: bool = False) -> ArgumentParser:
            from toilray.options import get_default_argument_parser

            return get_default_argument_parser(jobstore_as_flag)

        @staticmethod
        def getDefaultOptions(jobStore: str | None = None, jobstore_as_flag: bool = False) -> Namespace:
            from toilray.options import get_default_options

            return get_default_options(jobStore, jobstore_as_flag)

        @staticmethod
        def addToilOptions(parser: Any, jobstore_as_flag: bool = False) -> None:
            from toilray.options import add_toil_options

            add_toil_options(parser, jobstore_as_flag)

        @staticmethod
        def startToil(job: Job, options: Namespace) -> Any:
            from toilray.common import Toil

            with Toil(options) as toil:
                if options.restart:
                    return toil.restart()
                return toil.start(job)


def _all_services(services: list[Job.Service]) -> list[Job.Service]:
    found: list[Job.Service] = []
    stack = list(services)
    while stack:
        service = stack.pop()
        found.append(service)
        stack.extend(service._childServices)
    return found


def service_specs(job: Job, defaults: Requirements) -> tuple[ServiceSpec, ...]:
    """Describe the job's services (not yet described), parents before their sub-services."""
    specs: list[ServiceSpec] = []
    queue: list[tuple[Job.Service, str | None]] = [(s, None) for s in job._services]
    while queue:
        service, parent = queue.pop(0)
        specs.append(ServiceSpec(
            id=service._serviceID,
            parent=parent,
            name=service.unitName or type(service).__name__,
            requirements=Requirements.with_defaults(service._requirements, defaults),
            body=_pickled(service)[0],
        ))
        queue.extend((child, service._serviceID) for child in service._childServices)
    job._services = []
    return tuple(specs)


def _connected_jobs(start: Job) -> list[Job]:
    """Every job linked to ``start`` by successor or predecessor edges (its whole graph)."""
    seen: dict[int, Job] = {id(start): start}
    stack = [start]
    while stack:
        job = stack.pop()
        for other in (*job._successors(), *job._directPredecessors):
            if id(other) not in seen:
                seen[id(other)] = other
                stack.append(other)
    return list(seen.values())


def _descendants_via_children(job: Job) -> Iterable[Job]:
    """The children of ``job`` and everything that runs after them: what a follow-on waits for."""
    seen: dict[int, Job] = {}
    stack = list(job._children)
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        stack.extend(current._successors())
    return seen.values()


def _find_cycle(edges: dict[int, set[int]]) -> list[int]:
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    for start in edges:
        if colour[start] != white:
            continue
        path = [start]
        iterators = [iter(edges[start])]
        colour[start] = grey
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iterators.pop()
            elif colour.get(nxt, white) == grey:
                return [*path[path.index(nxt) :], nxt]
            elif colour.get(nxt, white) == white:
                colour[nxt] = grey
                path.append(nxt)
                iterators.append(iter(edges.get(nxt, ())))
    return []


# Set on a function by ``cached``: its wrapping jobs may be taken from the call cache.
CACHED_ATTRIBUTE = "toilrayCallCache"


def cached(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a function so that the jobs wrapping it (``Job.wrapFn``, ``addChildFn``, ...) are
    cached in runs with ``--callCache`` (as ``cache=True`` does for one call)."""
    setattr(function, CACHED_ATTRIBUTE, True)
    return function


class FunctionWrappingJob(Job):
    """Runs ``userFunction(*args, **kwargs)``. Resource keywords come from the call, then the
    function's own keyword defaults, then the configured defaults; they are not passed on."""

    def __init__(self, userFunction: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        spec = inspect.getfullargspec(userFunction)
        defaults: dict[str, Any] = {}
        if spec.defaults:
            defaults.update(zip(spec.args[-len(spec.defaults) :], spec.defaults, strict=True))
        if spec.kwonlydefaults:
            defaults.update(spec.kwonlydefaults)

        def resolve(key: str, default: Any = None) -> Any:
            if key in kwargs:
                return kwargs.pop(key)
            return defaults.get(key, default)

        PromisedRequirement.convertPromises(kwargs)
        # ``cache`` (toilray's) is the function's own argument when it takes one of that name.
        parameters = {*spec.args, *spec.kwonlyargs}
        self.userFunction = userFunction
        super().__init__(
            memory=resolve("memory"),
            cores=resolve("cores"),
            disk=resolve("disk"),
            accelerators=resolve("accelerators"),
            preemptible=resolve("preemptible", resolve("preemptable")),
            checkpoint=resolve("checkpoint", False),
            unitName=resolve("name", ""),
            displayName=kwargs.pop("displayName", ""),
            cache=bool(kwargs.pop("cache") if "cache" in kwargs and "cache" not in parameters
                       else getattr(userFunction, CACHED_ATTRIBUTE, False)),
        )
        self._args = args
        self._kwargs = kwargs

    def _default_job_name(self) -> str:
        return getattr(self.userFunction, "__name__", type(self).__name__)

    def run(self, fileStore: FileStore) -> Any:
        return self.userFunction(*self._args, **self._kwargs)

    def callIdentity(self) -> CallIdentity:
        """The function's code and the arguments of the call."""
        return CallIdentity(type(self).__name__, codeIdentity(self.userFunction), (self._args, self._kwargs),
                            self._cache_environment())


class JobFunctionWrappingJob(FunctionWrappingJob):
    """Runs ``userFunction(job, *args, **kwargs)``: the function gets this job as ``self``."""

    def run(self, fileStore: FileStore) -> Any:
        return self.userFunction(self, *self._args, **self._kwargs)


class EncapsulatedJob(Job):
    """A job and its whole successor graph, seen from outside as one job.

    Successors added to it run after the entire encapsulated graph; its ``rv()`` is the inner
    job's. It takes over the predecessors the inner job has when it is created.
    """

    def __init__(self, job: Job | None, unitName: str | None = None) -> None:
        super().__init__(unitName=unitName or "")
        self.encapsulatedJob = job
        self.encapsulatedFollowOn: Job | None = None
        if job is None:
            return
        self._jobName = f"Encapsulated{job._jobName}"
        self._displayName = self._jobName
        for predecessor in list(job._directPredecessors):
            for edges in (predecessor._children, predecessor._followOns):
                for i, successor in enumerate(edges):
                    if successor is job:
                        edges[i] = self
                        self._directPredecessors.append(predecessor)
        job._directPredecessors = []
        Job.addChild(self, job)

    def _after_inner(self) -> Job:
        if self.encapsulatedFollowOn is None:
            self.encapsulatedFollowOn = Job()
            Job.addFollowOn(self, self.encapsulatedFollowOn)
        return self.encapsulatedFollowOn

    def addChild(self, childJob: J) -> J:
        return Job.addChild(self._after_inner(), childJob)

    def addFollowOn(self, followOnJob: J) -> J:
        return Job.addFollowOn(self._after_inner(), followOnJob)

    def rv(self, *path: Any) -> Promise:
        if self.encapsulatedJob is None:
            raise JobException("This EncapsulatedJob wraps no job")
        return self.encapsulatedJob.rv(*path)


def _never(_job_id: str) -> bool:
    return False


def make_specs(root: Job, defaults: Requirements, committed: Callable[[str], bool] = _never) -> list[JobSpec]:
    """Describe every not-yet-saved job reachable from ``root`` (``root`` too, if new).

    Each job body is pickled here, once, and the promises it holds are checked (see
    ``_check_promises``; ``committed`` says whether a job outside this graph finished already).
    The jobs are then marked saved so that later graph edits that would bypass the leader raise
    instead of being lost. Nothing is marked when a check fails.
    """
    new_jobs: list[Job] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        job = stack.pop()
        if id(job) in seen:
            continue
        seen.add(id(job))
        if not job._saved:
            new_jobs.append(job)
        stack.extend(job._successors())
    bodies = []
    for job in new_jobs:
        job._defaults = defaults
        bodies.append(_pickled(job))
    _check_promises(root, [(job, promisers) for job, (_, promisers) in zip(new_jobs, bodies, strict=True)],
                    committed)
    shared: dict[Requirements, Requirements] = {}
    specs = []
    for job, (body, promisers) in zip(new_jobs, bodies, strict=True):
        promised = job._has_promised_requirements()
        specs.append(
            JobSpec(
                id=job._jobStoreID,
                name=job._jobName,
                unit_name=job._unitName,
                display_name=job._displayName,
                requirements=None if promised else _shared(shared, job._resolved_requirements()),
                checkpoint=job._checkpoint,
                children=tuple(c._jobStoreID for c in job._children),
                followons=tuple(f._jobStoreID for f in job._followOns),
                body=body,
                promise_deps=frozenset(promisers),
                services=service_specs(job, defaults),
            )
        )
    for job in new_jobs:
        job._saved = True
    return specs


def _shared(shared: dict[Requirements, Requirements], requirements: Requirements) -> Requirements:
    """One object for equal requirements: the specs of 100,000 jobs of a kind pickle (in the
    commit record and the outcome of the job that made them) as one, at half the time."""
    try:
        return shared.setdefault(requirements, requirements)
    except TypeError:  # accelerator requests are dicts, which cannot be hashed: such a job keeps its own
        return requirements


def _describe(maker: Any, job_id: str) -> str:
    """How an error names a job or service at the start of a sentence, as Toil names jobs."""
    if isinstance(maker, Job):
        return f"Job {_label(maker)}"
    if isinstance(maker, Job.Service):
        return f"Service '{maker.unitName or type(maker).__name__}' instance-{job_id[:8]}"
    return f"Job instance-{job_id[:8]}"


def _label(job: Job) -> str:
    return job_label(job._jobName, job._unitName, job._jobStoreID)


def _check_promises(root: Job, consumers: list[tuple[Job, dict[str, Any]]], committed: Callable[[str], bool]) -> None:
    """Refuse a promise that a job could need before the promising job has finished.

    A job may use the promises of the jobs Toil's ordering rules run before it (its
    predecessors, and for a follow-on the whole child subtree of its parent, transitively), of
    the services of those jobs, and of jobs that committed already. Toil refuses a promise
    of a job outside the graph when the body is saved, and a promise handed to a job that may
    run first (a sibling) fails there at run time unless the sibling happened to finish in
    time; toilray refuses both here, before anything runs, so that no script depends on luck.
    """
    consumers = [(consumer, promisers) for consumer, promisers in consumers if promisers]
    if not consumers:
        return  # most jobs hold no promise: no walk over the graph for them
    graph = _connected_jobs(root)
    jobs = {job._jobStoreID: job for job in graph}
    hosts = {service._serviceID: job for job in graph for service in _all_services(job._services)}
    # Predecessors first, so that a walk back from a consumer can stop at an earlier consumer
    # that already saw the same producers (a chain of jobs all using the first one's promise).
    order = {id(job): index for index, job in enumerate(_topological(graph))}
    known: dict[int, set[int]] = {}
    for consumer, promisers in sorted(consumers, key=lambda pair: order.get(id(pair[0]), -1)):
        wanted: dict[int, str] = {}
        for job_id in promisers:
            producer = jobs.get(job_id) or hosts.get(job_id)
            if producer is not None:
                wanted[id(producer)] = job_id
            elif not committed(job_id):
                _refuse_promise(promisers[job_id], job_id, consumer)
        found = _finished_before(consumer, set(wanted), known)
        known[id(consumer)] = found
        for producer_id in wanted.keys() - found:
            job_id = wanted[producer_id]
            _refuse_promise(promisers[job_id], job_id, consumer)


def _topological(jobs: list[Job]) -> list[Job]:
    """``jobs`` ordered so that each comes after its predecessors among them."""
    members = {id(job) for job in jobs}
    waiting = {id(job): sum(1 for p in job._directPredecessors if id(p) in members) for job in jobs}
    ready = [job for job in jobs if waiting[id(job)] == 0]
    order: list[Job] = []
    while ready:
        job = ready.pop()
        order.append(job)
        for successor in job._successors():
            if id(successor) in members:
                waiting[id(successor)] -= 1
                if waiting[id(successor)] == 0:
                    ready.append(successor)
    return order


def _refuse_promise(promiser: Any, job_id: str, consumer: Job) -> None:
    raise JobPromiseConstraintError(
        f"{_describe(promiser, job_id)} cannot promise its return value to non-successor {_label(consumer)}: "
        "that job could start before it has finished (a job may use the promises of its predecessors, "
        "and a follow-on those of its parent's children and their successors)"
    )


def _finished_before(job: Job, wanted: set[int], known: dict[int, set[int]]) -> set[int]:
    """Which of ``wanted`` (``id()`` of jobs) are certain to have run before ``job`` starts.

    Walks back along predecessor edges; a follow-on also waits for its parent's whole child
    subtree. Stops as soon as every wanted job is found (most promises are of a parent);
    ``known`` holds what earlier walks found before other jobs, which holds before this one too.
    """
    found: set[int] = set()
    seen = {id(job)}
    stack = [job]
    while stack and len(found) < len(wanted):
        current = stack.pop()
        for predecessor in current._directPredecessors:
            earlier: list[Job] = [predecessor]
            if any(f is current for f in predecessor._followOns):
                earlier.extend(_descendants_via_children(predecessor))
            for other in earlier:
                if id(other) not in seen:
                    seen.add(id(other))
                    if id(other) in wanted:
                        found.add(id(other))
                    found |= known.get(id(other), set()) & wanted
                    stack.append(other)
    return found


def _pickled(body: Job | Job.Service) -> tuple[bytes, dict[str, Any]]:
    """Pickle a job or service body; when that fails, name the argument or attribute to blame."""
    try:
        return serialize.dumps_with_promisers(body)
    except Exception as exc:
        body_id = body._jobStoreID if isinstance(body, Job) else body._serviceID
        raise JobPicklingException(f"{_describe(body, body_id)} cannot be pickled: {_unpicklable_part(body, exc)}") \
            from exc


def _unpicklable_part(body: Job | Job.Service, exc: Exception) -> str:
    for what, value in _body_parts(body):
        try:
            serialize.dumps(value)
        except Exception as part_exc:
            return f"its {what} cannot be pickled ({type(part_exc).__name__}: {part_exc})"
    return f"{type(exc).__name__}: {exc}"


def _body_parts(body: Job | Job.Service) -> Iterator[tuple[str, Any]]:
    """What a body is made of, named as the user wrote it: arguments, then attributes."""
    state = body.__getstate__()
    if isinstance(body, FunctionWrappingJob):
        params = inspect.getfullargspec(body.userFunction).args
        skip = 1 if isinstance(body, JobFunctionWrappingJob) else 0  # the job itself comes first
        for i, value in enumerate(state.pop("_args")):
            name = f" ({params[i + skip]})" if i + skip < len(params) else ""
            yield f"positional argument {i + 1}{name}", value
        for key, value in state.pop("_kwargs").items():
            yield f"keyword argument '{key}'", value
        yield "function", state.pop("userFunction")
    for key, value in state.items():
        yield f"attribute '{key}'", value


# -- how the engine runs a job body (the worker, the service host, debug-job) -------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run of a job body produced: its return value and the graph it grew."""

    value: Any
    new_specs: list[JobSpec]
    services: tuple[ServiceSpec, ...]
    children: tuple[str, ...]
    followons: tuple[str, ...]


def load_job(body: bytes, context: serialize.PromiseContext, defaults: Requirements) -> Job:
    """A job body as it is about to run: promises resolved, the run's default requirements,
    and marked scheduled (so it cannot be added as anyone's successor again)."""
    job = context.loads(body)
    if not isinstance(job, Job):
        raise JobException(f"A job body holds a {type(job).__name__}, not a Job")
    job._saved = True
    job._defaults = defaults
    return job


def requirements_of(job: Job) -> Requirements:
    """The job's requirements with its promised ones resolved (the job must be loaded)."""
    return job._resolved_requirements()


def call_identity(job: Job, file_store: FileStore) -> CallIdentity:
    """The job's ``callIdentity()``, asked with ``job.fileStore`` available (a front end's job
    may read its inputs' descriptions, such as CWL directory manifests, from the job store)."""
    job._fileStore = file_store
    return job.callIdentity()


def run_job(job: Job, file_store: FileStore, cwd: str | None = None) -> RunResult:
    """Run a loaded job's body with ``file_store`` as its ``job.fileStore`` (in ``cwd`` if given),
    check the graph it grew and describe its new successors and services."""
    job._fileStore = file_store
    file_store.cache_limit = job.disk
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        value = job._run(jobGraph=None, fileStore=file_store)
    finally:
        os.chdir(previous)
    job.checkJobGraphForDeadlocks()
    defaults = job._defaults or TOIL_DEFAULTS
    return RunResult(
        value=value,
        new_specs=make_specs(job, defaults, file_store.jobStore.is_committed),
        services=service_specs(job, defaults),
        children=tuple(c._jobStoreID for c in job._children),
        followons=tuple(f._jobStoreID for f in job._followOns),
    )


class ServiceHostJob(Job):
    """The job that hosts a service: what its ``start(job)`` and ``stop(job)`` get (toilray
    hosts a service in a Ray actor, which makes this job for it)."""

    def __init__(self, service: Job.Service) -> None:
        super().__init__(**service._requirements, unitName=service.unitName)
        self._jobName = type(service).__name__
        self.service = service


def service_host_job(service: Job.Service, file_store: FileStore) -> ServiceHostJob:
    """The host job of a loaded service, with the service host's ``fileStore``."""
    job = ServiceHostJob(service)
    job._fileStore = file_store
    return job
