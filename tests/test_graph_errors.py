"""Mistakes in a job graph give one clear message naming the jobs, before any job runs.

A promise handed to a job that may run before the promising job finishes, an argument that
cannot be pickled, and a requirement no node can meet (disk included), in sizes people read.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from toilray.cluster import NodeCapacity, why_unschedulable
from toilray.common import Toil
from toilray.exceptions import FailedJobsException, JobPicklingException, JobPromiseConstraintError
from toilray.job import Job, make_specs
from toilray.jobStores.jobStore import JobStore
from toilray.requirements import TOIL_DEFAULTS, Requirements


def _touch(count_dir: str, name: str) -> None:
    Path(count_dir, f"{name}-{uuid.uuid4().hex}").touch()


def ran(count_dir: Path) -> list[str]:
    """The names of the jobs that ran, once per run."""
    return sorted(name.rsplit("-", 1)[0] for name in os.listdir(count_dir))


def produce(count_dir: str) -> int:
    _touch(count_dir, "produce")
    return 42


def consume(count_dir: str, value: Any) -> Any:
    _touch(count_dir, "consume")
    return value


def use_lock(count_dir: str, lock: Any = None) -> None:
    _touch(count_dir, "use_lock")


class LockHolder(Job):
    def __init__(self, count_dir: str) -> None:
        super().__init__()
        self.count_dir = count_dir
        self.guard = threading.Lock()

    def run(self, fileStore: Any) -> None:
        _touch(self.count_dir, "LockHolder")


def _failure_reports(store: Path) -> list[str]:
    return list(JobStore(f"file:{store}").failure_reports().values())


@pytest.fixture
def counts(tmp_path: Path) -> Path:
    directory = tmp_path / "counts"
    directory.mkdir()
    return directory


def _sibling(root: Job, counts: Path) -> tuple[Job, Job]:
    producer = root.addChildFn(produce, str(counts))
    return producer, root.addChildFn(consume, str(counts), producer.rv())


def _outside_the_graph(root: Job, counts: Path) -> tuple[Job, Job]:
    producer = Job.wrapFn(produce, str(counts))  # never added to the graph
    return producer, root.addChildFn(consume, str(counts), {"nested": [producer.rv()]})


@pytest.mark.parametrize("shape", [_sibling, _outside_the_graph])
def test_a_promise_of_a_job_that_may_not_have_finished_is_refused_before_any_job_runs(
        tmp_path: Path, ray_address: str, counts: Path, shape: Any) -> None:
    root = Job.wrapFn(_touch, str(counts), "root")
    producer, consumer = shape(root, counts)
    with pytest.raises(JobPromiseConstraintError) as refused, \
            Toil(Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")) as toil:
        toil.start(root)
    assert (f"Job 'produce' kind-produce/instance-{producer.jobStoreID[:8]} cannot promise its return value "
            f"to non-successor 'consume' kind-consume/instance-{consumer.jobStoreID[:8]}") in str(refused.value)
    assert isinstance(refused.value, RuntimeError)  # Toil's JobPromiseConstraintError is one
    assert ran(counts) == []


class _Server(Job.Service):
    def start(self, job: Job) -> str:
        return "address"

    def stop(self, job: Job) -> None:
        return None


def test_promises_follow_toils_ordering_rules() -> None:
    def graph() -> tuple[Job, Job, Job, Job, Job]:
        root = Job()
        child = root.addChild(Job())
        grandchild = child.addFollowOn(Job())
        followon = root.addFollowOn(Job())
        return root, child, grandchild, followon, followon.addChild(Job())

    def consumer_of(promise: Any) -> Job:
        return Job.wrapFn(consume, "", promise)

    # Accepted: a parent's, a follow-on's of its parent's whole child subtree, transitively, a
    # service of a predecessor, and (at run time) a job that committed already.
    root, child, grandchild, followon, last = graph()
    child.addChild(consumer_of(root.rv()))
    followon.addChild(consumer_of([child.rv(), grandchild.rv()]))
    followon.addFollowOn(consumer_of(last.rv()))
    last.addFollowOn(consumer_of(grandchild.rv()))
    child.addChild(consumer_of(root.addService(_Server())))
    assert len(make_specs(root, TOIL_DEFAULTS)) == 10
    assert len(make_specs(consumer_of(Job().rv()), TOIL_DEFAULTS, lambda _job_id: True)) == 1

    def own(root: Job, child: Job, grandchild: Job, followon: Job, last: Job) -> None:
        last.mine = last.rv()

    # Refused: a promise to a job that runs first, a sibling's, a job's own, an outsider's.
    for bad in (
        lambda root, child, grandchild, followon, last: child.addChild(consumer_of(followon.rv())),
        lambda root, child, grandchild, followon, last: root.addChild(consumer_of(grandchild.rv())),
        own,
        lambda root, child, grandchild, followon, last: child.addChild(consumer_of(Job().rv())),
    ):
        jobs = graph()
        bad(*jobs)
        with pytest.raises(JobPromiseConstraintError, match="cannot promise its return value to non-successor"):
            make_specs(jobs[0], TOIL_DEFAULTS)


def _grow_sibling_promise(job: Job, count_dir: str) -> None:
    _touch(count_dir, "grower")
    producer = job.addChildFn(produce, count_dir)
    job.addChildFn(consume, count_dir, producer.rv())


def _grow_unpicklable_child(job: Job, count_dir: str) -> None:
    _touch(count_dir, "grower")
    job.addChildFn(use_lock, count_dir, lock=threading.Lock())


@pytest.mark.parametrize(("grower", "expected"), [
    (_grow_sibling_promise, r"JobPromiseConstraintError: Job 'produce' kind-produce/instance-\w{8} cannot promise "
                            r"its return value to non-successor 'consume' kind-consume/instance-\w{8}"),
    (_grow_unpicklable_child, r"JobPicklingException: Job 'use_lock' kind-use_lock/instance-\w{8} cannot be pickled: "
                              r"its keyword argument 'lock' cannot be pickled \(TypeError: cannot pickle "
                              r"'_thread.lock' object\)"),
])
def test_a_bad_graph_made_at_run_time_fails_the_job_that_made_it(tmp_path: Path, ray_address: str, counts: Path,
                                                                  grower: Any, expected: str) -> None:
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.retryCount = 0
    with pytest.raises(FailedJobsException) as failed, Toil(options) as toil:
        toil.start(Job.wrapJobFn(grower, str(counts)))
    assert grower.__name__ in str(failed.value)
    (report,) = _failure_reports(tmp_path / "store")
    first_line = report.splitlines()[0]
    assert first_line.startswith(f"Job '{grower.__name__}' ")
    assert re.search(expected, first_line), first_line
    assert ran(counts) == ["grower"]  # the jobs it made never ran


@pytest.mark.parametrize(("add", "blamed", "part"), [
    (lambda root, counts: root.addChildFn(use_lock, counts, threading.Lock()), "use_lock",
     "its positional argument 2 (lock)"),
    (lambda root, counts: root.addChildFn(use_lock, counts, lock=threading.Lock()), "use_lock",
     "its keyword argument 'lock'"),
    (lambda root, counts: root.addChild(LockHolder(counts)), "LockHolder", "its attribute 'guard'"),
])
def test_an_unpicklable_argument_is_named_before_any_job_runs(tmp_path: Path, ray_address: str, counts: Path,
                                                              add: Any, blamed: str, part: str) -> None:
    root = Job.wrapFn(_touch, str(counts), "root")
    job = add(root, str(counts))
    with pytest.raises(JobPicklingException) as refused, \
            Toil(Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")) as toil:
        toil.start(root)
    assert str(refused.value) == (
        f"Job '{blamed}' kind-{blamed}/instance-{job.jobStoreID[:8]} cannot be pickled: "
        f"{part} cannot be pickled (TypeError: cannot pickle '_thread.lock' object)"
    )
    assert ran(counts) == []


def test_disk_and_memory_no_node_has_fail_at_once_in_human_sizes(tmp_path: Path, ray_address: str,
                                                                 counts: Path) -> None:
    root = Job()
    root.addChildFn(_touch, str(counts), "big_disk", disk="900T")
    root.addChildFn(_touch, str(counts), "big_memory", memory="900T")
    with pytest.raises(FailedJobsException), Toil(Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")) as toil:
        toil.start(root)
    reports = "\n".join(_failure_reports(tmp_path / "store"))
    assert re.search(r"'_touch' kind-_touch/instance-\w{8} can never run: it asks for 900 TB of disk "
                     r"\(the largest node has [\d.]+ Gi?B for --workDir\)", reports), reports
    assert re.search(r"can never run: it asks for 900 TB of memory \(the largest node has [\d.]+ Gi?B\)", reports)
    assert ran(counts) == []


def test_requirements_over_the_max_options_are_reported_in_human_sizes(tmp_path: Path, ray_address: str,
                                                                       counts: Path) -> None:
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.maxMemory, options.maxDisk = "1G", "1G"
    root = Job(memory="100M", disk="100M")
    root.addChildFn(_touch, str(counts), "memory", memory="3G", disk="100M")
    root.addChildFn(_touch, str(counts), "disk", memory="100M", disk="5Gi")
    with pytest.raises(FailedJobsException), Toil(options) as toil:
        toil.start(root)
    reports = "\n".join(_failure_reports(tmp_path / "store"))
    assert "can never run: it asks for 3 GB of memory but --maxMemory is 1 GB" in reports
    assert "can never run: it asks for 5 GiB of disk but --maxDisk is 1 GB" in reports
    assert ran(counts) == []


def test_only_nodes_that_report_their_disk_are_held_to_it() -> None:
    def asking(disk: int) -> Requirements:
        return Requirements(cores=1, memory=10**9, disk=disk, accelerators=(), preemptible=False)

    measured = NodeCapacity(4, 8e9, 0, disk=100 * 10**9)
    unknown = NodeCapacity(4, 8e9, 0)
    assert why_unschedulable(asking(10**12), [measured]) == (
        "it asks for 1 TB of disk (the largest node has 100 GB for --workDir)")
    assert why_unschedulable(asking(10**12), [measured, unknown]) is None
    assert why_unschedulable(asking(50 * 10**9), [measured]) is None
