"""Scenario 2: N jobs, each the follow-on of the one before."""

from __future__ import annotations

from harness.config import TOILRAY_ENGINES
from harness.context import Context
from harness.process import RunOutcome
from harness.report import Section, table
from harness.scenarios import timings
from harness.scenarios.fanout import vs_plain_ray

ORDER = ["toil", "toilray", "toilray-warm", "ray"]


def one(ctx: Context, engine: str, n: int) -> RunOutcome:
    label = f"chain N={n} {engine}"
    with ctx.scratch(label) as directory:
        if engine == "ray":
            argv = ctx.engines[engine].script_command("plain_ray.py", ["chain", "--jobs", str(n)])
            outcome = ctx.run_command(engine, argv, label, directory)
        else:
            out = directory / "count.txt"
            outcome = ctx.run_workflow(
                engine, "chain.py", ["--jobs", str(n), "--out", str(out)], label, directory
            )
    return timings.check_result(ctx, outcome, n)


def run(ctx: Context) -> Section:
    section = Section("chain", "2. Chain: N jobs, each the follow-on of the last")
    rows: list[list[str]] = []
    largest: dict[str, list[RunOutcome]] = {}
    for n in ctx.sizes.chain:
        runs = ctx.repeat(ctx.usable(ORDER), lambda engine, _rep, n=n: one(ctx, engine, n))
        rows += timings.rows(ctx, f"N={n:,}", runs, dict.fromkeys(ORDER, n), ORDER)
        largest = runs
    section.lines += [
        "Toil may run a follow-on in the worker of the job before it (job chaining), so its chain "
        "costs one worker process rather than N; toilray likewise runs a lone successor in the Ray "
        "task of the job before it. Plain Ray runs each step as a task of its own.",
        "",
        *table(timings.HEADERS, rows),
    ]
    if ctx.sizes.chain:
        section.targets += [
            vs_plain_ray(f"chain N={max(ctx.sizes.chain):,}", largest, engine)
            for engine in TOILRAY_ENGINES
            if engine in ctx.engines
        ]
    return section
