"""Scenario 1: a root with N trivial children whose results a follow-on sums through promises."""

from __future__ import annotations

from harness import stats
from harness.config import TOILRAY_ENGINES
from harness.context import Context
from harness.process import RunOutcome
from harness.report import Section, Target, table
from harness.scenarios import timings
from harness.targets import at_least, at_most

ORDER = ["toil", "toilray", "toilray-warm", "ray"]
TOIL_SPEEDUP_AT = 1_000
RATE_AT = 10_000


def jobs_per_engine(n: int) -> dict[str, int]:
    """Jobs in the DAG: root + N children + follow-on; plain Ray has N tasks and the sum."""
    return {"toil": n + 2, "toilray": n + 2, "toilray-warm": n + 2, "ray": n + 1}


def one(ctx: Context, engine: str, n: int) -> RunOutcome:
    label = f"fanout N={n} {engine}"
    with ctx.scratch(label) as directory:
        if engine == "ray":
            argv = ctx.engines[engine].script_command("plain_ray.py", ["fanout", "--jobs", str(n)])
            outcome = ctx.run_command(engine, argv, label, directory)
        else:
            outcome = ctx.run_workflow(engine, "fanout.py", ["--jobs", str(n)], label, directory)
    return timings.check_result(ctx, outcome, n * (n - 1) // 2)


def measure(ctx: Context, n: int, engines: list[str]) -> dict[str, list[RunOutcome]]:
    """Repetitions of the fan-out at size ``n``; kept on the context for the memory scenario."""
    runs = ctx.repeat(ctx.usable(engines), lambda engine, _rep: one(ctx, engine, n))
    ctx.fanout_runs.setdefault(n, {}).update(runs)
    return runs


def engines_for(ctx: Context, n: int) -> list[str]:
    return [e for e in ORDER if e != "toil" or n <= ctx.sizes.fanout_toil_max]


def _targets(by_n: dict[int, dict[str, list[RunOutcome]]], engine: str) -> list[Target]:
    """The fan-out targets for one toilray engine (embedded or warm)."""
    targets = []
    toil_sizes = [n for n in by_n if by_n[n].get("toil")]
    at = TOIL_SPEEDUP_AT if TOIL_SPEEDUP_AT in toil_sizes else max(toil_sizes, default=None)
    if at is not None:
        toil_e2e = stats.median_e2e(by_n[at]["toil"])
        toilray_e2e = stats.median_e2e(by_n[at].get(engine, []))
        speedup = stats.ratio(toil_e2e, toilray_e2e)
        inner = stats.ratio(stats.median_inner(by_n[at]["toil"]), stats.median_inner(by_n[at].get(engine, [])))
        targets.append(
            at_least(
                f"fan-out N={at:,}: {engine} vs Toil, end to end",
                "≥100x faster",
                speedup,
                100.0,
                f"{stats.fmt_ratio(speedup)} faster",
                f"in workflow {stats.fmt_ratio(inner)}",
            )
        )
    largest = max(by_n, default=None)
    if largest is not None:
        runs = by_n[largest].get(engine, [])
        jobs = jobs_per_engine(largest)[engine]
        rate = stats.ratio(float(jobs), stats.median_inner(runs))
        e2e_rate = stats.ratio(float(jobs), stats.median_e2e(runs))
        targets.append(
            at_least(
                f"fan-out N={largest:,}: {engine} throughput",
                f"≥500 jobs/s at N={RATE_AT:,}",
                rate,
                500.0,
                f"{stats.fmt_rate(rate)} in workflow",
                f"end to end {stats.fmt_rate(e2e_rate)}",
            )
        )
        targets.append(vs_plain_ray(f"fan-out N={largest:,}", by_n[largest], engine))
    return targets


def vs_plain_ray(name: str, runs: dict[str, list[RunOutcome]], engine: str) -> Target:
    """A toilray engine's time over plain Ray's for the same DAG, in workflow (end to end in the
    note). Embedded toilray and plain Ray both start Ray in that time; toilray-warm does not, so
    its baseline is plain Ray's DAG alone (after ``ray.init``)."""
    dag = stats.median_of(runs.get("ray", []), lambda r: r.record.get("dag_s"))
    toilray_inner = stats.median_inner(runs.get(engine, []))
    ray_inner = stats.median_inner(runs.get("ray", []))
    e2e = stats.ratio(stats.median_e2e(runs.get(engine, [])), stats.median_e2e(runs.get("ray", [])))
    if engine == "toilray-warm":
        value = stats.ratio(toilray_inner, dag)
        shown = f"{stats.fmt_ratio(value)} plain Ray's DAG alone"
        note = (
            f"in workflow {stats.fmt_s(toilray_inner)} vs plain Ray's DAG {stats.fmt_s(dag)}; against plain "
            f"Ray's whole run (with `ray.init`): in workflow {stats.fmt_ratio(stats.ratio(toilray_inner, ray_inner))}"
            f", end to end {stats.fmt_ratio(e2e)}"
        )
    else:
        value = stats.ratio(toilray_inner, ray_inner)
        shown = f"{stats.fmt_ratio(value)} in workflow"
        note = f"end to end {stats.fmt_ratio(e2e)}; plain Ray's DAG alone took {stats.fmt_s(dag)}"
    return at_most(f"{name}: {engine} vs plain Ray", "≤3x plain Ray's time", value, 3.0, shown, "x", note)


def run(ctx: Context) -> Section:
    section = Section("fanout", "1. Fan-out: N trivial children summed by a follow-on through promises")
    by_n: dict[int, dict[str, list[RunOutcome]]] = {}
    rows: list[list[str]] = []
    for n in ctx.sizes.fanout:
        order = engines_for(ctx, n)
        by_n[n] = measure(ctx, n, order)
        rows += timings.rows(ctx, f"N={n:,}", by_n[n], jobs_per_engine(n), order)
    section.lines += [f"Toil runs only up to N={ctx.sizes.fanout_toil_max:,}.", ""]
    section.lines += table(timings.HEADERS, rows)
    section.targets = [
        target for engine in TOILRAY_ENGINES if engine in ctx.engines for target in _targets(by_n, engine)
    ]
    return section
