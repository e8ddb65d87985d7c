"""The fan-out and chain DAGs as plain Ray tasks: no job store, no durability.

``wall_s`` includes ``ray.init`` (as the Toil scripts' time includes starting the workflow);
``dag_s`` is the DAG alone.
"""

from __future__ import annotations

import argparse
import os
import time

import ray
from driver import emit, peak_rss_mb


@ray.remote
def leaf(i: int) -> int:
    return i


@ray.remote
def total(*values: int) -> int:
    return sum(values)


@ray.remote
def step(previous: int) -> int:
    return previous + 1


def fanout(n: int) -> int:
    return ray.get(total.remote(*[leaf.remote(i) for i in range(n)]))


def chain(n: int) -> int:
    ref = step.remote(0)
    for _ in range(n - 1):
        ref = step.remote(ref)
    return ray.get(ref)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dag", choices=["fanout", "chain"])
    parser.add_argument("--jobs", type=int, required=True)
    options = parser.parse_args()
    started = time.perf_counter()
    ray.init(
        num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    dag_started = time.perf_counter()
    result = fanout(options.jobs) if options.dag == "fanout" else chain(options.jobs)
    finished = time.perf_counter()
    ray.shutdown()
    emit(
        {
            "engine": "ray",
            "wall_s": finished - started,
            "dag_s": finished - dag_started,
            "result": result,
            "leader_peak_rss_mb": peak_rss_mb(),
        }
    )


if __name__ == "__main__":
    main()
