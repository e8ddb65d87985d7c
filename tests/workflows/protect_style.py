"""Test workflow in protect's style: a subgraph run as one encapsulated job whose value a
later job uses, and jobs that report to the leader with ``fileStore.logToMaster``."""

from __future__ import annotations

import json
from typing import Any

from toilray.common import Toil
from toilray.job import Job


def call_mutations(job: Job, caller: str) -> list[str]:
    job.fileStore.logToMaster(f"protect-style: ran the {caller} caller")
    return [f"{caller}:chr1:100"]


def merge(job: Job, calls: list[list[str]]) -> list[str]:
    return sorted(c for caller in calls for c in caller)


def run_callers(job: Job) -> Any:
    calls = [job.addChildJobFn(call_mutations, caller, cores=0.1).rv() for caller in ("mutect", "strelka")]
    return job.addFollowOnJobFn(merge, calls, cores=0.1).rv()


def report(job: Job, merged: list[str]) -> dict[str, Any]:
    job.fileStore.logToMaster(f"protect-style: {len(merged)} calls merged")
    return {"merged": merged}


def start(job: Job) -> Any:
    callers = Job.wrapJobFn(run_callers, cores=0.1).encapsulate()
    job.addChild(callers)
    # The encapsulated job's value is its subgraph's (merge's list), and its children run
    # once that whole subgraph finished.
    return callers.addChildJobFn(report, callers.rv(), cores=0.1).rv()


if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    with Toil(options) as toil:
        print(json.dumps(toil.start(Job.wrapJobFn(start, cores=0.1))))
