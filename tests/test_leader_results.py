"""Unit tests of which return values the leader keeps in memory (no Ray, no I/O).

A value is kept while an unfinished job's promises, or a kept value's promises, read it, and
the root result is kept to the end; everything else is read back from the job store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from test_leader_state import spec

from toilray.leader_results import ResultKeeper
from toilray.protocol import JobSpec


def reading(job_id: str, deps: Iterable[str]) -> JobSpec:
    return replace(spec(job_id), promise_deps=frozenset(deps))


def test_a_value_nobody_reads_is_not_kept() -> None:
    keeper: ResultKeeper[str] = ResultKeeper("root")
    children = [spec(f"c{i}") for i in range(1000)]
    keeper.jobs_added([spec("root"), *children])
    keeper.job_succeeded(spec("root"), "root value", frozenset())
    for child in children:
        keeper.job_succeeded(child, f"value of {child.id}", frozenset())
    assert len(keeper) == 1
    assert keeper.get("root") == "root value"


def test_a_value_is_kept_until_its_last_reader_finished() -> None:
    keeper: ResultKeeper[str] = ResultKeeper(None)
    producer, first, second = spec("p"), reading("r1", ["p"]), reading("r2", ["p"])
    keeper.jobs_added([producer, first, second])
    keeper.job_succeeded(producer, "data", frozenset())
    assert keeper.get("p") == "data"
    keeper.job_succeeded(first, "x", frozenset())
    assert keeper.get("p") == "data"
    keeper.job_succeeded(second, "y", frozenset())
    assert keeper.get("p") is None
    assert len(keeper) == 0


def test_readers_created_by_the_producers_own_run_count() -> None:
    keeper: ResultKeeper[str] = ResultKeeper(None)
    producer = spec("p")
    keeper.jobs_added([producer])
    keeper.jobs_added([reading("follow", ["p"])])  # made by p's run, added before p's success
    keeper.job_succeeded(producer, "data", frozenset())
    assert keeper.get("p") == "data"


def test_a_kept_value_keeps_the_values_its_promises_name() -> None:
    # The root returns child.rv(): the child's value must outlive the child's own readers.
    keeper: ResultKeeper[str] = ResultKeeper("root")
    root, child = spec("root"), spec("child")
    keeper.jobs_added([root, child])
    keeper.job_succeeded(root, "promise of child", frozenset({"child"}))
    keeper.job_succeeded(child, "child value", frozenset())
    assert keeper.get("child") == "child value"
    assert keeper.promised_by("root") == frozenset({"child"})


def test_dropping_a_value_releases_what_its_promises_named() -> None:
    keeper: ResultKeeper[str] = ResultKeeper(None)
    inner, outer, reader = spec("inner"), spec("outer"), reading("reader", ["outer"])
    keeper.jobs_added([inner, outer, reader])
    keeper.job_succeeded(outer, "promise of inner", frozenset({"inner"}))
    keeper.job_succeeded(inner, "inner value", frozenset())
    assert keeper.get("inner") == "inner value"
    keeper.job_succeeded(reader, "done", frozenset())
    assert keeper.get("outer") is None
    assert keeper.get("inner") is None


def test_a_forgotten_job_loses_its_value() -> None:
    keeper: ResultKeeper[str] = ResultKeeper(None)
    checkpoint, reader = spec("cp"), reading("reader", ["cp"])
    keeper.jobs_added([checkpoint, reader])
    keeper.job_succeeded(checkpoint, "first run", frozenset())
    keeper.forget("cp")
    assert keeper.get("cp") is None
