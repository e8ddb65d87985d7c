"""In-process tests of Toil's job API as toilray implements it (no Ray, no job store)."""

from __future__ import annotations

import os
import pickle
import random
import stat
from pathlib import Path
from typing import Any

import pytest

from toilray import serialize
from toilray.exceptions import JobException, JobGraphDeadlockException
from toilray.fileStores import FileID
from toilray.job import (
    EncapsulatedJob,
    FunctionWrappingJob,
    Job,
    JobFunctionWrappingJob,
    Promise,
    PromisedRequirement,
    make_specs,
)
from toilray.leader_state import LeaderState
from toilray.lib.conversions import human2bytes
from toilray.protocol import JobSpec
from toilray.requirements import Requirements, parse_accelerators, parse_cores, parse_preemptible

GI = 2**30
DEFAULTS = Requirements(cores=1.0, memory=2 * GI, disk=2 * GI, accelerators=(), preemptible=False)


# Module-level functions, as Toil requires of wrapped functions.


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def with_resource_defaults(msg: str, memory: str = "1G", cores: int = 3, disk: str = "5M") -> tuple[str, str]:
    return msg, memory


def with_kwonly_defaults(*, disk: str = "7Mi", preemptible: bool = True) -> str:
    return "ok"


def plain(x: Any = None) -> Any:
    return x


def job_fn(job: Job, a: int, memory: str = "1G") -> tuple[Job, int, str]:
    return job, a, memory


# -- graph checks ---------------------------------------------------------------------------------


def assert_deadlock(job: Job) -> None:
    with pytest.raises(JobGraphDeadlockException):
        job.checkJobGraphAcylic()
    with pytest.raises(JobGraphDeadlockException):
        job.checkJobGraphForDeadlocks()


def test_direct_child_cycle_is_rejected() -> None:
    r, a, b = Job(), Job(), Job()
    r.addChild(a)
    a.addChild(b)
    b.addChild(a)
    for job in (r, a, b):
        assert_deadlock(job)


def test_followon_and_child_cycle_without_root_is_rejected() -> None:
    a, b = Job(), Job()
    a.addFollowOn(b)
    b.addChild(a)
    assert_deadlock(a)
    with pytest.raises(JobGraphDeadlockException):
        a.checkJobGraphConnected()  # no root at all


def test_cycle_through_an_implied_followon_edge_is_rejected() -> None:
    # C must wait for B (A's child) to finish, but B is C's child.
    a, b, c = Job(), Job(), Job()
    a.addChild(b)
    a.addFollowOn(c)
    c.addChild(b)
    assert_deadlock(a)


def test_cycle_through_implied_edge_from_a_grandchilds_subtree_is_rejected() -> None:
    # A -child-> B -followon-> D ; A -followon-> C -child-> D : C waits for D, D waits for C.
    a, b, c, d = Job(), Job(), Job(), Job()
    a.addChild(b)
    b.addFollowOn(d)
    a.addFollowOn(c)
    c.addChild(d)
    assert_deadlock(a)


def test_followon_inside_its_parents_child_subtree_is_rejected() -> None:
    # C is A's follow-on, so it waits for A's child subtree, which contains C itself.
    a, b, c = Job(), Job(), Job()
    a.addChild(b)
    b.addChild(c)
    a.addFollowOn(c)
    assert_deadlock(a)
    a2, b2, c2 = Job(), Job(), Job()
    a2.addChild(b2)
    a2.addFollowOn(c2)
    b2.addFollowOn(c2)
    assert_deadlock(a2)
    a3, c3 = Job(), Job()
    a3.addChild(c3)
    a3.addFollowOn(c3)
    assert_deadlock(a3)


def test_adding_a_job_as_its_own_successor_is_rejected() -> None:
    a = Job()
    with pytest.raises(JobGraphDeadlockException):
        a.addChild(a)
    with pytest.raises(JobGraphDeadlockException):
        a.addFollowOn(a)


def test_valid_dags_pass_every_check() -> None:
    # Toil's DAG example plus follow-ons at several levels.
    j1 = Job.wrapJobFn(job_fn, 1)
    j2 = j1.addChildJobFn(job_fn, 2)
    j3 = j1.addChildJobFn(job_fn, 3)
    j4 = j2.addChildJobFn(job_fn, 4)
    j3.addChild(j4)
    j4.addFollowOn(Job())
    f = j1.addFollowOn(Job())
    f.addChild(Job()).addFollowOn(Job())
    j2.addFollowOn(Job())
    for job in (j1, j2, j3, j4, f):
        job.checkJobGraphForDeadlocks()
        job.checkJobGraphAcylic()
        job.checkJobGraphConnected()
        job.checkNewCheckpointsAreLeafVertices()
    assert j4.getRootJobs() == {j1}


def test_followon_of_a_child_and_parent_followon_in_sequence_is_valid() -> None:
    # A -child-> B -followon-> C ; A -followon-> D ; D -child-> E : no cycle.
    a, b, c, d, e = Job(), Job(), Job(), Job(), Job()
    a.addChild(b)
    b.addFollowOn(c)
    a.addFollowOn(d)
    d.addChild(e)
    a.checkJobGraphForDeadlocks()


def test_long_followon_chain_checks_without_recursion() -> None:
    root = Job()
    current = root
    for _ in range(5000):
        current.addChild(Job())
        current = current.addFollowOn(Job())
    root.checkJobGraphForDeadlocks()
    assert len(root.getTopologicalOrderingOfJobs()) == 10_001


def test_two_roots_are_rejected() -> None:
    a, b, c = Job(), Job(), Job()
    a.addChild(c)
    b.addChild(c)
    assert a.getRootJobs() == {a, b}
    for job in (a, b, c):
        with pytest.raises(JobGraphDeadlockException):
            job.checkJobGraphConnected()
    with pytest.raises(JobGraphDeadlockException):
        a.checkJobGraphForDeadlocks()
    a.checkJobGraphAcylic()  # acyclic, only not connected to one root


def test_new_checkpoint_with_successors_is_rejected() -> None:
    root = Job()
    checkpoint = root.addChildJobFn(job_fn, 1, checkpoint=True)
    assert checkpoint.checkpoint
    root.checkNewCheckpointsAreLeafVertices()  # a leaf checkpoint is fine
    checkpoint.addChild(Job())
    for check in (Job.checkNewCheckpointsAreLeafVertices, Job.checkNewCheckpointsAreLeaves,
                  Job.checkNewCheckpointsAreCutVertices, Job.checkJobGraphForDeadlocks):
        with pytest.raises(JobGraphDeadlockException):
            check(root)


def test_new_checkpoint_with_followon_is_rejected() -> None:
    root = Job()
    checkpoint = root.addChild(Job(checkpoint=True))
    checkpoint.addFollowOn(Job())
    with pytest.raises(JobGraphDeadlockException):
        root.checkNewCheckpointsAreLeafVertices()


def test_root_checkpoint_with_successors_is_allowed_like_toil() -> None:
    # Toil's check skips the roots of the component ("the roots are the preexisting jobs"), so a
    # workflow whose root is a checkpoint with static successors starts in Toil.
    root = Job.wrapJobFn(job_fn, 0, checkpoint=True)
    root.addChildJobFn(job_fn, 1)
    root.checkNewCheckpointsAreLeafVertices()
    root.checkJobGraphForDeadlocks()


def test_toil_spellings_of_the_acyclic_check() -> None:
    a, b = Job(), Job()
    a.addChild(b)
    b.addFollowOn(a)
    for name in ("checkJobGraphAcylic", "checkJobGraphAcyclic"):
        with pytest.raises(JobGraphDeadlockException):
            getattr(a, name)()


# Random graphs: the augmented-graph check must agree with what the engine can actually run.


def _random_jobs(rng: random.Random, size: int) -> tuple[list[Job], dict[int, set[int]]]:
    jobs = [Job() for _ in range(size)]
    kids: dict[int, list[int]] = {i: [] for i in range(size)}
    fos: dict[int, list[int]] = {i: [] for i in range(size)}
    for index in range(1, size):
        for parent in rng.sample(range(index), k=min(index, rng.choice([1, 1, 2, 3]))):
            if rng.random() < 0.6:
                jobs[parent].addChild(jobs[index])
                kids[parent].append(index)
            else:
                jobs[parent].addFollowOn(jobs[index])
                fos[parent].append(index)

    succ = {i: kids[i] + fos[i] for i in range(size)}

    def subtree(start: int) -> set[int]:
        seen, stack = {start}, [start]
        while stack:
            for nxt in succ[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    needs: dict[int, set[int]] = {i: set() for i in range(size)}
    for parent in range(size):
        for child in kids[parent]:
            needs[child].add(parent)
        for followon in fos[parent]:
            needs[followon].add(parent)
            for child in kids[parent]:
                needs[followon] |= subtree(child)
    return jobs, needs


@pytest.mark.parametrize("seed", range(100))
def test_acyclic_check_agrees_with_runnability(seed: int) -> None:
    rng = random.Random(seed)
    jobs, needs = _random_jobs(rng, rng.randint(2, 12))
    done: set[int] = set()
    while True:
        runnable = {i for i in needs if i not in done and needs[i] <= done}
        if not runnable:
            break
        done |= runnable
    runs_to_completion = len(done) == len(jobs)
    if runs_to_completion:
        jobs[-1].checkJobGraphForDeadlocks()
    else:
        with pytest.raises(JobGraphDeadlockException):
            jobs[-1].checkJobGraphAcylic()


# -- requirements of wrapped functions --------------------------------------------------------------


def test_default_requirements_are_toils() -> None:
    job = Job()
    assert job.memory == 2147483648
    assert job.disk == 2147483648
    assert job.cores == 1
    assert job.accelerators == []
    assert job.preemptible is False
    assert job.preemptable is False
    wrapped = Job.wrapFn(plain)
    assert (wrapped.memory, wrapped.cores, wrapped.disk) == (2147483648, 1, 2147483648)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("2G", 2 * 10**9), ("1Gi", 2**30), ("100M", 10**8), ("512", 512), (1024, 1024), ("1.5Gi", 3 * 2**29)],
)
def test_memory_spellings(given: str | int, expected: int) -> None:
    assert Job(memory=given).memory == expected
    assert Job.wrapFn(plain, memory=given).memory == expected
    assert Job(disk=given).disk == expected


def test_setting_requirements_after_construction() -> None:
    job = Job()
    job.memory = "3G"
    job.cores = "0.5"
    job.disk = "1Ki"
    job.preemptible = "TRUE"
    job.accelerators = "nvidia:2"
    assert (job.memory, job.cores, job.disk, job.preemptible) == (3 * 10**9, 0.5, 1024, True)
    assert job.accelerators == [{"count": 2, "kind": "gpu", "brand": "nvidia"}]


def test_invalid_requirements_raise() -> None:
    with pytest.raises(ValueError):
        Job(memory="lots")
    with pytest.raises(ValueError):
        Job(cores=-1)
    with pytest.raises(ValueError):
        Job(preemptible="maybe")
    with pytest.raises(ValueError):
        Job.wrapFn(plain, disk="2 parsecs")


def test_call_kwargs_beat_function_defaults_which_beat_config() -> None:
    job = Job.wrapFn(with_resource_defaults, "hi", memory="1Gi")
    assert job.memory == 2**30  # the call
    assert job.cores == 3  # the function's default
    assert job.disk == 5 * 10**6  # the function's default
    assert job.preemptible is False  # the configured default
    kwonly = Job.wrapFn(with_kwonly_defaults)
    assert kwonly.disk == 7 * 2**20
    assert kwonly.preemptible is True
    assert kwonly.memory == 2 * GI


def test_function_defaults_apply_to_job_functions_too() -> None:
    job = Job.wrapJobFn(job_fn, 5)
    assert job.memory == 10**9
    got_job, a, memory = job.run(None)
    assert got_job is job
    assert (a, memory) == (5, "1G")


def test_reserved_kwargs_are_not_passed_to_the_function() -> None:
    job = Job.wrapFn(echo, 1, 2, memory="1G", cores=2, disk="1M", accelerators=1, preemptible=True,
                     checkpoint=True, name="unit-x", displayName="shown", extra="kept")
    assert isinstance(job, FunctionWrappingJob)
    assert job.run(None) == ((1, 2), {"extra": "kept"})
    assert (job.memory, job.cores, job.disk) == (10**9, 2, 10**6)
    assert job.accelerators == [{"count": 1, "kind": "gpu"}]
    assert job.preemptible is True
    assert job.checkpoint is True
    assert job.unitName == "unit-x"
    assert job.displayName == "shown"


def test_reserved_kwarg_overrides_but_does_not_reach_a_function_that_declares_it() -> None:
    job = Job.wrapFn(with_resource_defaults, "m", memory="3G")
    assert job.memory == 3 * 10**9
    assert job.run(None) == ("m", "1G")  # the function sees its own default, as in Toil


def test_job_function_gets_the_job_first() -> None:
    job = Job.wrapJobFn(echo, "x", cores=1, y=2)
    assert isinstance(job, JobFunctionWrappingJob)
    args, kwargs = job.run(None)
    assert args[0] is job
    assert args[1:] == ("x",)
    assert kwargs == {"y": 2}


def test_promised_requirement_is_kept_until_resolved() -> None:
    source = Job()
    consumer = Job.wrapFn(plain, memory=source.rv(0), disk=PromisedRequirement(lambda xs: sum(xs), [1, 2]))
    assert consumer._has_promised_requirements()
    assert consumer.disk == 3
    source.addChild(consumer)
    specs = {s.id: s for s in make_specs(source, DEFAULTS)}
    assert specs[consumer.jobStoreID].requirements is None
    assert specs[consumer.jobStoreID].promise_deps == {source.jobStoreID}
    assert specs[source.jobStoreID].requirements == DEFAULTS


def test_promised_requirement_without_function_takes_one_value() -> None:
    assert PromisedRequirement(5).getValue() == 5
    assert PromisedRequirement(max, 3, 9).getValue() == 9
    with pytest.raises(JobException):
        PromisedRequirement(5, 6)
    kwargs: dict[str, Any] = {"memory": Job().rv(), "other": 1}
    assert PromisedRequirement.convertPromises(kwargs)
    assert isinstance(kwargs["memory"], PromisedRequirement)
    assert not PromisedRequirement.convertPromises({"memory": "1G"})


# -- names and graph edits ------------------------------------------------------------------------


class NamedJob(Job):
    def run(self, fileStore: Any) -> str:
        return "ran"


def test_job_names() -> None:
    wrapped = Job.wrapFn(plain)
    assert wrapped.jobName == "plain"
    assert wrapped.displayName == "plain"
    assert wrapped.unitName == ""
    assert Job.wrapJobFn(job_fn, 1, name="u").jobName == "job_fn"
    assert Job.wrapJobFn(job_fn, 1, name="u").unitName == "u"
    sub = NamedJob(unitName="inst", displayName="Category")
    assert (sub.jobName, sub.unitName, sub.displayName) == ("NamedJob", "inst", "Category")
    assert NamedJob().displayName == "NamedJob"
    assert Job().run(None) is None


def test_successor_queries() -> None:
    a, b, c, d = Job(), Job(), Job(), Job()
    assert a.addChild(b) is b
    assert a.addFollowOn(c) is c
    assert a.hasChild(b) and not a.hasChild(c) and not a.hasChild(d)
    assert a.hasFollowOn(c) and not a.hasFollowOn(b)
    assert b.hasPredecessor(a) and c.hasPredecessor(a) and not a.hasPredecessor(b)


def test_add_fn_helpers_return_the_new_job() -> None:
    a = Job()
    child = a.addChildFn(plain, 1)
    followon = a.addFollowOnFn(plain, 2)
    child_job = a.addChildJobFn(job_fn, 3)
    followon_job = a.addFollowOnJobFn(job_fn, 4, memory="4G")
    assert type(child) is FunctionWrappingJob and type(followon) is FunctionWrappingJob
    assert type(child_job) is JobFunctionWrappingJob and type(followon_job) is JobFunctionWrappingJob
    assert a.hasChild(child) and a.hasChild(child_job)
    assert a.hasFollowOn(followon) and a.hasFollowOn(followon_job)
    assert child.run(None) == 1
    assert followon_job.memory == 4 * 10**9
    assert followon_job.run(None)[1:] == (4, "1G")


def test_non_jobs_cannot_be_successors() -> None:
    with pytest.raises(JobException):
        Job().addChild(plain)  # type: ignore[arg-type]


def test_rv_slice_must_be_last() -> None:
    job = Job()
    with pytest.raises(JobException):
        job.rv(slice(0, 2), 1)
    assert isinstance(job.rv(1, slice(0, 2)), Promise)
    assert isinstance(job.rv(), Promise)


def test_topological_ordering_respects_every_edge() -> None:
    a, b, c, d, e, f = (Job() for _ in range(6))
    a.addChild(b)
    a.addChild(c)
    b.addChild(d)
    c.addChild(d)
    a.addFollowOn(e)
    e.addChild(f)
    order = a.getTopologicalOrderingOfJobs()
    assert sorted(map(id, order)) == sorted(map(id, (a, b, c, d, e, f)))
    position = {id(j): i for i, j in enumerate(order)}
    for parent, child in ((a, b), (a, c), (b, d), (c, d), (a, e), (e, f)):
        assert position[id(parent)] < position[id(child)]


def test_topological_ordering_covers_new_jobs_only() -> None:
    a = Job()
    a.addChild(Job())
    make_specs(a, DEFAULTS)
    new = a.addChild(Job())
    assert a.getTopologicalOrderingOfJobs() == [new]


# -- EncapsulatedJob ------------------------------------------------------------------------------


def run_graph(specs: list[JobSpec]) -> list[str]:
    """Drive the leader's state machine over the specs; the order in which jobs ran."""
    state = LeaderState(retry_count=0)
    state.add_jobs(specs)
    order: list[str] = []
    pending = state.take_ready()
    while pending:
        for job_id in pending:
            state.job_ran(job_id)
            order.append(job_id)
        pending = state.take_ready()
    assert state.unfinished_count() == 0
    return order


def test_successors_of_an_encapsulated_job_wait_for_the_whole_subgraph() -> None:
    inner = Job()
    inner_child = inner.addChild(Job())
    grandchild_followon = inner_child.addFollowOn(Job())
    inner_followon = inner.addFollowOn(Job())
    wrapper = inner.encapsulate()
    assert isinstance(wrapper, EncapsulatedJob)
    after_child = wrapper.addChild(Job())
    after_followon = wrapper.addFollowOn(Job())
    wrapper.checkJobGraphForDeadlocks()
    order = run_graph(make_specs(wrapper, DEFAULTS))
    position = {job_id: i for i, job_id in enumerate(order)}
    for inside in (inner, inner_child, grandchild_followon, inner_followon):
        assert position[inside.jobStoreID] < position[after_child.jobStoreID]
        assert position[inside.jobStoreID] < position[after_followon.jobStoreID]
    assert position[after_child.jobStoreID] < position[after_followon.jobStoreID]


def test_encapsulated_rv_is_the_inner_rv() -> None:
    inner = Job()
    wrapper = inner.encapsulate(name="enc")
    assert wrapper.unitName == "enc"
    consumer = Job.wrapFn(plain, wrapper.rv(1))
    wrapper.addChild(consumer)
    specs = {s.id: s for s in make_specs(wrapper, DEFAULTS)}
    assert specs[consumer.jobStoreID].promise_deps == {inner.jobStoreID}
    values = {inner.jobStoreID: serialize.dumps(["zero", "one"])[0]}
    body = serialize.PromiseContext(values, lambda _id: b"").loads(specs[consumer.jobStoreID].body)
    assert body.run(None) == "one"


def test_encapsulation_takes_over_predecessors() -> None:
    parent = Job()
    inner = parent.addChild(Job())
    wrapper = inner.encapsulate()
    assert parent.hasChild(wrapper)
    assert not parent.hasChild(inner)
    assert wrapper.hasPredecessor(parent)
    assert inner.hasPredecessor(wrapper)
    assert not inner.hasPredecessor(parent)
    parent.checkJobGraphForDeadlocks()
    assert parent.getRootJobs() == {parent}
    fo_parent = Job()
    fo_inner = fo_parent.addFollowOn(Job())
    fo_wrapper = EncapsulatedJob(fo_inner)
    assert fo_parent.hasFollowOn(fo_wrapper) and not fo_parent.hasFollowOn(fo_inner)


def test_predecessors_added_after_encapsulation_are_not_taken_over() -> None:
    inner = Job()
    wrapper = inner.encapsulate()
    late = Job()
    late.addChild(inner)  # the inner job gains a second parent; the wrapper does not
    assert not wrapper.hasPredecessor(late)
    assert inner.hasPredecessor(late) and inner.hasPredecessor(wrapper)


# -- make_specs and promises ------------------------------------------------------------------------


def test_make_specs_describes_every_job_once() -> None:
    root = Job(memory="1G", unitName="the-root", displayName="Root")
    other = root.addChildFn(plain, 1)
    shared = Job()
    other.addChild(shared)
    second = root.addChild(Job())
    second.addChild(shared)
    consumer = root.addFollowOn(Job.wrapFn(plain, other.rv()))
    specs = make_specs(root, DEFAULTS)
    assert len(specs) == 5
    by_id = {s.id: s for s in specs}
    assert set(by_id) == {j.jobStoreID for j in (root, other, shared, second, consumer)}
    r = by_id[root.jobStoreID]
    assert set(r.children) == {other.jobStoreID, second.jobStoreID}
    assert r.followons == (consumer.jobStoreID,)
    assert (r.name, r.unit_name, r.display_name) == ("Job", "the-root", "Root")
    assert r.requirements == Requirements(1.0, 10**9, 2 * GI, (), False)
    assert r.promise_deps == frozenset()
    assert by_id[consumer.jobStoreID].promise_deps == {other.jobStoreID}
    assert by_id[consumer.jobStoreID].name == "plain"
    assert by_id[shared.jobStoreID].children == ()


def test_make_specs_uses_the_given_defaults() -> None:
    custom = Requirements(cores=2.0, memory=123, disk=456, accelerators=({"count": 1, "kind": "gpu"},),
                          preemptible=True)
    job = Job.wrapFn(plain, cores=4)
    (only,) = make_specs(job, custom)
    assert only.requirements == Requirements(4.0, 123, 456, ({"count": 1, "kind": "gpu"},), True)


def test_promise_deps_found_in_nested_arguments() -> None:
    root = Job()
    a, b, c = root.addChild(Job()), root.addChild(Job()), root.addChild(Job())
    consumer = root.addFollowOn(Job.wrapFn(echo, {"k": [a.rv(0)]}, (b.rv("x"),), key=[[c.rv()]]))
    specs = {s.id: s for s in make_specs(root, DEFAULTS)}
    assert specs[consumer.jobStoreID].promise_deps == {a.jobStoreID, b.jobStoreID, c.jobStoreID}


def test_make_specs_only_describes_new_jobs_and_freezes_saved_ones() -> None:
    root = Job()
    root.addChild(Job())
    assert len(make_specs(root, DEFAULTS)) == 2
    assert make_specs(root, DEFAULTS) == []
    new = root.addChild(Job())  # what a running (saved) job does in its run()
    (spec,) = make_specs(root, DEFAULTS)
    assert spec.id == new.jobStoreID
    with pytest.raises(JobException):
        Job().addChild(root)  # a saved job cannot gain a new predecessor


def test_spec_body_runs_with_promises_resolved() -> None:
    producer = Job()
    consumer = producer.addChildFn(plain, producer.rv(1, "a"))
    specs = {s.id: s for s in make_specs(producer, DEFAULTS)}
    values = {producer.jobStoreID: serialize.dumps([6, {"a": 42}])[0]}
    job = serialize.PromiseContext(values, lambda _id: b"").loads(specs[consumer.jobStoreID].body)
    assert job.jobStoreID == consumer.jobStoreID
    assert job.run(None) == 42


def resolve(data: bytes, values: dict[str, Any]) -> Any:
    raw = {job_id: serialize.dumps(value)[0] for job_id, value in values.items()}

    def fetch(job_id: str) -> bytes:
        raise AssertionError(f"unexpected fetch of {job_id}")

    return serialize.PromiseContext(raw, fetch).loads(data)


@pytest.mark.parametrize(
    ("value", "path", "expected"),
    [
        ([6, {"a": 42}], (), [6, {"a": 42}]),
        ([6, {"a": 42}], (0,), 6),
        ([6, {"a": 42}], (1,), {"a": 42}),
        ([6, {"a": 42}], (1, "a"), 42),
        ([6, 7, 8, 9], (slice(1, 3),), [7, 8]),
        ((0, 1, 2, 3), (2,), 2),
        ([[1, 2, 3]], (0, slice(1, None)), [2, 3]),
        ("hello", (slice(None, None, -1),), "olleh"),
    ],
)
def test_rv_paths(value: Any, path: tuple[Any, ...], expected: Any) -> None:
    job = Job()
    data, deps = serialize.dumps(job.rv(*path))
    assert deps == {job.jobStoreID}
    assert resolve(data, {job.jobStoreID: value}) == expected


def test_nested_promises_resolve_everywhere() -> None:
    a, b = Job(), Job()
    structure = {"list": [a.rv(), (b.rv(0), "plain")], "deep": {"x": [[a.rv("k")]]}, "n": 5}
    data, deps = serialize.dumps(structure)
    assert deps == {a.jobStoreID, b.jobStoreID}
    got = resolve(data, {a.jobStoreID: {"k": "v"}, b.jobStoreID: ["b0", "b1"]})
    assert got == {"list": [{"k": "v"}, ("b0", "plain")], "deep": {"x": [["v"]]}, "n": 5}


def test_promises_resolve_transitively() -> None:
    a, b, c = Job(), Job(), Job()
    a_value, a_deps = serialize.dumps([b.rv(1)])  # a returned a promise of b
    b_value, b_deps = serialize.dumps((0, c.rv()))  # b returned a promise of c
    assert a_deps == {b.jobStoreID} and b_deps == {c.jobStoreID}
    raw = {a.jobStoreID: a_value, b.jobStoreID: b_value, c.jobStoreID: serialize.dumps("z")[0]}
    data, _ = serialize.dumps({"r": a.rv(0)})
    assert serialize.PromiseContext(raw, lambda _id: b"").loads(data) == {"r": "z"}


def test_missing_values_are_fetched_once() -> None:
    a = Job()
    fetched: list[str] = []

    def fetch(job_id: str) -> bytes:
        fetched.append(job_id)
        return serialize.dumps([1, 2])[0]

    data, _ = serialize.dumps([a.rv(0), a.rv(1), a.rv()])
    assert serialize.PromiseContext({}, fetch).loads(data) == [1, 2, [1, 2]]
    assert fetched == [a.jobStoreID]


def test_promise_outside_a_context_survives_a_round_trip() -> None:
    a = Job()
    data, _ = serialize.dumps({"p": a.rv(1)})
    loaded = serialize.loads(data)
    assert isinstance(loaded["p"], Promise)
    again, deps = serialize.dumps(loaded)
    assert deps == {a.jobStoreID}
    assert resolve(again, {a.jobStoreID: "xy"}) == {"p": "y"}


def test_no_promises_no_deps() -> None:
    assert serialize.dumps({"a": [1, 2, "3"]})[1] == frozenset()


# -- FileID -----------------------------------------------------------------------------------------


def test_file_id_is_a_str_with_size_and_executable() -> None:
    fid = FileID("files/abc", 1234, True)
    assert isinstance(fid, str)
    assert fid == "files/abc"
    assert (fid.size, fid.executable) == (1234, True)
    assert FileID("x", 1).executable is False


def test_file_id_pack_unpack_round_trip() -> None:
    for fid in (FileID("files/a:b:c", 0, False), FileID("plain", 99, True)):
        packed = fid.pack()
        assert isinstance(packed, str)
        back = FileID.unpack(packed)
        assert back == fid
        assert (back.size, back.executable) == (fid.size, fid.executable)


def test_file_id_pickles_with_size() -> None:
    fid = FileID("abc", 77, True)
    for data in (pickle.dumps(fid), serialize.dumps(fid)[0]):
        back = pickle.loads(data)
        assert type(back) is FileID
        assert back == "abc"
        assert (back.size, back.executable) == (77, True)


def test_file_id_for_path(tmp_path: Path) -> None:
    path = tmp_path / "tool.sh"
    path.write_text("#!/bin/sh\n")
    os.chmod(path, 0o644)
    fid = FileID.forPath("id1", str(path))
    assert (fid.size, fid.executable) == (10, False)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    assert FileID.forPath("id1", str(path)).executable is True


# -- sizes and requirement spellings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2G", 2 * 10**9),
        ("2g", 2 * 10**9),
        ("2GB", 2 * 10**9),
        ("1Gi", 2**30),
        ("1GiB", 2**30),
        ("1.5Gi", 3 * 2**29),
        ("100k", 100_000),
        ("100K", 100_000),
        ("32M", 32 * 10**6),
        ("512Mi", 512 * 2**20),
        ("2Ki", 2048),
        ("1T", 10**12),
        ("512", 512),
        ("10b", 10),
        (" 3 Mi ", 3 * 2**20),
        (4096, 4096),
        (2.0, 2),
    ],
)
def test_human2bytes(text: str | int | float, expected: int) -> None:
    assert human2bytes(text) == expected


@pytest.mark.parametrize("text", ["", "G", "lots", "2 parsecs", "-1G", "1..2G", "2Qi", True])
def test_human2bytes_rejects(text: Any) -> None:
    with pytest.raises(ValueError):
        human2bytes(text)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2", ({"count": 2, "kind": "gpu"},)),
        (2, ({"count": 2, "kind": "gpu"},)),
        ("gpu", ({"count": 1, "kind": "gpu"},)),
        ("nvidia:2", ({"count": 2, "kind": "gpu", "brand": "nvidia"},)),
        ("cuda", ({"count": 1, "kind": "gpu", "api": "cuda", "brand": "nvidia"},)),
        ("nvidia-tesla-k80", ({"count": 1, "kind": "gpu", "model": "nvidia-tesla-k80", "brand": "nvidia"},)),
        ("a100|nvidia|cuda:4", ({"count": 4, "kind": "gpu", "model": "a100", "brand": "nvidia", "api": "cuda"},)),
        ({"brand": "amd", "count": 3}, ({"count": 3, "kind": "gpu", "brand": "amd"},)),
        ({"kind": "gpu"}, ({"count": 1, "kind": "gpu"},)),
        (["1", {"count": 2, "brand": "nvidia"}],
         ({"count": 1, "kind": "gpu"}, {"count": 2, "kind": "gpu", "brand": "nvidia"})),
        ("nvidia:1,rocm:2", ({"count": 1, "kind": "gpu", "brand": "nvidia"},
                             {"count": 2, "kind": "gpu", "api": "rocm", "brand": "amd"})),
        (None, ()),
        ("0", ()),
        ([], ()),
    ],
)
def test_parse_accelerators(spec: Any, expected: tuple[dict[str, Any], ...]) -> None:
    assert parse_accelerators(spec) == expected


@pytest.mark.parametrize("spec", ["nvidia:lots", "a|b|c|d", 1.5])
def test_parse_accelerators_rejects(spec: Any) -> None:
    with pytest.raises(ValueError):
        parse_accelerators(spec)


def test_requirement_gpus_and_other_parsers() -> None:
    req = Requirements(1.0, 1, 1, parse_accelerators(["nvidia:2", "cuda"]), False)
    assert req.gpus == 3.0
    assert parse_cores("0.25") == 0.25
    assert parse_cores(2) == 2.0
    assert [parse_preemptible(v) for v in ("True", "false", 1, 0, True)] == [True, False, True, False, True]
    with pytest.raises(ValueError):
        parse_preemptible(2)
    assert req.with_memory_at_least(10).memory == 10
    assert req.with_memory_at_least(0).memory == 1
