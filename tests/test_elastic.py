"""The scaling rule of elastic HPC runs (toilray.elastic.plan), without Ray or a scheduler: what
pending demand and the worker jobs' states make toilray submit and cancel."""

from __future__ import annotations

from toilray.elastic import JOINED, QUEUED, STARTING, Demand, Limits, Shape, WorkerJob, demand_of, plan

GB = 10**9
NODE = Shape(cpus=4, memory=8 * GB)
LIMITS = Limits(NODE, max_nodes=3, idle_time=60.0)


def test_demand_gets_whole_worker_jobs_and_a_slice_up_to_max_nodes() -> None:
    # 9 one-core jobs: two whole nodes and a slice of one core (with its share of the memory).
    actions = plan([Demand(1, 0.1 * GB, count=9)], [], Limits(NODE, max_nodes=10, idle_time=60.0), now=0.0)
    assert actions.submit == (NODE, NODE, Shape(1, 2 * GB))
    assert actions.cancel == ()
    # 40 of them: --maxNodes worker jobs, whole ones.
    assert plan([Demand(1, count=40)], [], LIMITS, now=0.0).submit == (NODE, NODE, NODE)
    # The last worker job allowed is whole: a slice would be all the run ever gets.
    one = Limits(NODE, max_nodes=1, idle_time=60.0)
    assert plan([Demand(1)], [], one, now=0.0).submit == (NODE,)
    assert plan([Demand(1)], [WorkerJob("1", NODE, JOINED, 0.0)], LIMITS, now=0.0).submit == (Shape(1, 2 * GB),)
    # Jobs bigger than a worker job are not asked for (the leader fails them, naming the shape);
    # a job that needs more memory than a slice's share gets what it needs.
    assert plan([Demand(8), Demand(1, 5 * GB)], [WorkerJob("1", NODE, JOINED, 0.0)], LIMITS,
                now=0.0).submit == (Shape(1, 7_142_857_143),)


def test_worker_jobs_on_their_way_take_the_demand_first() -> None:
    coming = [WorkerJob("1", NODE, QUEUED, submitted=0.0), WorkerJob("2", NODE, STARTING, submitted=0.0)]
    assert plan([Demand(1, count=8)], coming, LIMITS, now=1.0).submit == ()
    # Joined nodes are Ray's to fill: what Ray still waits for needs more worker jobs.
    joined = [WorkerJob("1", NODE, JOINED, submitted=0.0), *coming[1:]]
    assert plan([Demand(1, count=8)], joined, LIMITS, now=1.0).submit == (NODE,)
    assert plan([Demand(1, count=8)], [*joined, WorkerJob("3", NODE, QUEUED, 0.0)], LIMITS, 1.0).submit == ()


def test_idle_worker_jobs_are_cancelled_after_the_idle_time() -> None:
    workers = [WorkerJob("1", NODE, JOINED, submitted=0.0, idle_seconds=59.0),
               WorkerJob("2", NODE, JOINED, submitted=0.0, idle_seconds=60.0),
               WorkerJob("3", NODE, QUEUED, submitted=0.0)]
    # A queued one stays while there is demand, however long it waits.
    assert plan([Demand(1)], workers, LIMITS, now=100.0).cancel == ("2",)
    assert plan([], workers, LIMITS, now=100.0).cancel == ("2", "3")
    assert plan([], workers, LIMITS, now=30.0).cancel == ("2",)


def test_gpu_demand_and_ray_bundles() -> None:
    gpu_node = Shape(cpus=8, memory=None, gpus=2)
    limits = Limits(gpu_node, max_nodes=2, idle_time=60.0)
    # A slice of the GPU node (two GPUs with two cores), then the last one allowed, whole.
    assert plan([Demand(1, gpus=1, count=3)], [], limits, now=0.0).submit == (Shape(2, None, 2), gpu_node)
    assert plan([Demand(1, gpus=1)], [], LIMITS, now=0.0).submit == ()  # no GPUs in the worker jobs
    # Ray's bundles: a bundle that asks for a resource worker jobs do not offer is not theirs.
    assert demand_of([({"CPU": 1.0, "memory": 5e7}, 3), ({"CPU": 1.0, "on_demand": 0.001}, 1)]) == [
        Demand(1.0, 5e7, 0.0, 3)]
