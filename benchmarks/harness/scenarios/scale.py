"""Scenario 9: 100,000 jobs. A fan-out of that size, and a restart of a store of that size
killed halfway: how long the restart takes to get its first job running, and to finish.

toilray only (Toil runs up to 1,000 jobs here in minutes); the leader's peak RSS is the
workflow process's, as in scenario 1.
"""

from __future__ import annotations

import time

from harness import stats
from harness.config import TOILRAY_ENGINES
from harness.context import Context
from harness.process import RunOutcome
from harness.report import Section, Target, table
from harness.scenarios import timings
from harness.scenarios.restart import LineCounter, committed_ids, read_marks, wait_until_quiet
from harness.targets import at_least, at_most

RATE_GOAL = 1_500.0
FIRST_JOB_GOAL_S = 5.0


def _fanout(ctx: Context, engine: str, n: int) -> RunOutcome:
    label = f"scale fanout N={n} {engine}"
    with ctx.scratch(label) as directory:
        outcome = ctx.run_workflow(engine, "fanout.py", ["--jobs", str(n)], label, directory)
    return timings.check_result(ctx, outcome, n * (n - 1) // 2)


class FirstMark:
    """Polled by the run's watcher: notes when the first mark appears (the restart's first job ran)."""

    def __init__(self, counter: LineCounter) -> None:
        self.counter = counter
        self.started = time.perf_counter()
        self.seen_s: float | None = None

    def __call__(self) -> bool:
        if self.seen_s is None and self.counter() > 0:
            self.seen_s = time.perf_counter() - self.started
        return False  # never stops the run


def _restart(ctx: Context, engine: str, n: int, first_job: dict[str, list[float]],
             committed_rerun: dict[str, list[int]]) -> RunOutcome:
    label = f"scale restart N={n} {engine}"
    with ctx.scratch(label) as directory:
        store, marks = directory / "store", directory / "marks"
        counter = LineCounter(marks)
        first = ctx.run_workflow(
            engine, "markedfanout.py", ["--jobs", str(n), "--marks", str(marks)], f"{label} (to be killed)",
            directory / "first", clean="never", job_store=store, stop_when=lambda: counter() >= n // 2,
        )
        if not first.killed:
            why = first.error or "it finished before half of its jobs were done; no restart to measure"
            return ctx.fail(first, f"the run to be killed: {why}")
        ctx.finish(first)
        wait_until_quiet(counter)
        committed = committed_ids(engine, store) or set()
        marks.rename(directory / "marks.before")
        watch = FirstMark(LineCounter(marks))
        restart = ctx.run_workflow(engine, "markedfanout.py", ["--restart", "--marks", str(marks)],
                                   f"{label} --restart", directory / "restart", job_store=store, stop_when=watch)
        if not restart.ok:
            return restart
        if restart.record.get("result") != n * (n - 1) // 2:
            return ctx.fail(restart, f"wrong result {restart.record.get('result')!r} after the restart")
        if watch.seen_s is not None:
            first_job[engine].append(watch.seen_s)
        committed_rerun[engine].append(sum(1 for job_id, _ in read_marks(marks) if job_id in committed))
        return restart


def run(ctx: Context) -> Section:
    n = ctx.sizes.scale_jobs
    engines = ctx.usable([e for e in TOILRAY_ENGINES if e in ctx.engines])
    fanouts = ctx.repeat(engines, lambda engine, _rep: _fanout(ctx, engine, n))
    first_job: dict[str, list[float]] = {e: [] for e in engines}
    rerun: dict[str, list[int]] = {e: [] for e in engines}
    restarts = ctx.repeat(engines, lambda engine, _rep: _restart(ctx, engine, n, first_job, rerun))
    rows = []
    section = Section("scale", f"9. {n:,} jobs")
    for engine in engines:
        inner = stats.median_inner(fanouts[engine])
        rate = (n + 2) / inner if inner else None
        first = stats.median(first_job[engine])
        rows.append([
            engine,
            stats.runs_ok(fanouts[engine]),
            stats.fmt_s(stats.median_e2e(fanouts[engine])),
            stats.fmt_s(inner),
            stats.fmt_rate(rate),
            stats.fmt_mb(stats.median_of(fanouts[engine], lambda r: r.leader_peak_rss_mb)),
            stats.runs_ok(restarts[engine]),
            stats.fmt_s(first),
            stats.fmt_s(stats.median_e2e(restarts[engine])),
            stats.fmt_mb(stats.median_of(restarts[engine], lambda r: r.leader_peak_rss_mb)),
            str(max(rerun[engine], default="-")),
        ])
        section.targets += [
            at_least(f"fan-out N={n:,}: {engine} throughput", f"≥{RATE_GOAL:,.0f} jobs/s in workflow", rate,
                     RATE_GOAL, stats.fmt_rate(rate) + " in workflow"),
            _first_job_target(engine, n, first),
        ]
    section.lines += [
        f"A fan-out of {n:,} trivial children (scenario 1's workflow), and scenario 5's restart at {n:,} "
        "children: the leader is SIGKILLed once half of them are done, then `--restart` runs the rest. "
        "*First job after restart*: from the start of the `--restart` process (interpreter, imports, "
        "connecting to Ray, reading the store) until the first child run by it has left its mark. "
        "*Committed re-run*: children re-run although their commit record was in the store (must be 0).",
        "",
        *table(
            ["engine", "fan-out runs ok", "fan-out end to end", "fan-out in workflow", "jobs/s (in workflow)",
             "fan-out leader peak RSS", "restart runs ok", "first job after restart", "restart end to end",
             "restart leader peak RSS", "committed re-run"],
            rows,
        ),
    ]
    return section


def _first_job_target(engine: str, n: int, first: float | None) -> Target:
    return at_most(f"restart of a {n:,}-job store: first job ({engine})", f"≤{FIRST_JOB_GOAL_S:g} s", first,
                   FIRST_JOB_GOAL_S, stats.fmt_s(first), " s")
