"""Scenario 6: ``toilray status`` and ``toil status`` on a store of many unfinished jobs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from harness import stats
from harness.context import Context
from harness.process import RunOutcome
from harness.report import Section, skipped, table
from harness.scenarios.restart import LineCounter

ORDER = ["toil", "toilray"]
TITLE = "6. `status` on a store of unfinished jobs"
# Seconds the leader runs on after the first child started: toilray's leader records its
# counts for `toilray status` once a second, so a kill within that second leaves stale counts.
SETTLE_S = 2.0
_EXCERPT_CHARS = 300


def missing_command(ctx: Context, engine: str) -> str | None:
    """Why ``<engine> status`` cannot be run, or None when it can."""
    runner = ctx.engines.get(engine)
    if runner is None or runner.unavailable is not None:
        return f"{engine} is not available" + (f" ({runner.unavailable})" if runner else "")
    tool = runner.tool(engine)
    if not tool.exists():
        return f"`{engine} status` does not exist: no {tool}"
    try:
        proc = subprocess.run(
            [str(tool), "status", "--help"], capture_output=True, text=True, env=runner.env, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{engine} status --help` could not run: {exc}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = f" ({lines[-1].strip()})" if lines else ""
        return (
            f"`{engine} status` does not exist yet: `{engine} status --help` exited {proc.returncode}{detail}"
        )
    return None


def build_store(ctx: Context, engine: str, directory: Path) -> RunOutcome:
    """Start the pending-jobs workflow and kill it ``SETTLE_S`` after its first child started."""
    n = ctx.sizes.status_jobs
    marks, gate = directory / "marks", directory / "gate"
    counter = LineCounter(marks)
    first_start: list[float] = []

    def settled() -> bool:
        if not first_start and counter() > 0:
            first_start.append(time.monotonic())
        return bool(first_start) and time.monotonic() - first_start[0] >= SETTLE_S

    args = ["--jobs", str(n), "--marks", str(marks), "--gate", str(gate)]
    outcome = ctx.run_workflow(
        engine,
        "pending.py",
        args,
        f"status store of {n} jobs {engine}",
        directory / "build",
        clean="never",
        job_store=directory / "store",
        stop_when=settled,
    )
    if not outcome.killed:
        ctx.fail(outcome, outcome.error or "the workflow ended before its children started")
    return ctx.finish(outcome)


def status_once(ctx: Context, engine: str, store: Path, directory: Path, label: str) -> RunOutcome:
    """One ``<engine> status`` run; what it printed is kept in ``record['output']``."""
    argv = [str(ctx.engines[engine].tool(engine)), "status", f"file:{store}"]
    outcome = ctx.run_command(engine, argv, label, directory, expect_record=False)
    printed = " ".join((directory / "stdout.log").read_text(errors="replace").split())
    outcome.record["output"] = printed[:_EXCERPT_CHARS]
    return outcome


def run(ctx: Context) -> Section:
    reasons = {name: why for name in ORDER if (why := missing_command(ctx, name))}
    if reasons:
        return skipped("status", TITLE, "; ".join(reasons.values()))
    n = ctx.sizes.status_jobs
    with ctx.scratch("status stores") as directory:
        stores = {name: directory / name for name in ORDER}
        built = {name: build_store(ctx, name, stores[name]) for name in ORDER}
        if not all(b.killed for b in built.values()):
            return skipped("status", TITLE, "a store of unfinished jobs could not be built (see failed runs)")
        runs = ctx.repeat(
            ORDER,
            lambda engine, rep: status_once(
                ctx,
                engine,
                stores[engine] / "store",
                stores[engine] / f"status-{rep}",
                f"{engine} status rep {rep + 1}",
            ),
        )
    rows = []
    for name, outcomes in runs.items():
        printed = next((o.record.get("output", "") for o in outcomes if o.ok), "")
        rows.append(
            [
                f"`{name} status`",
                stats.runs_ok(outcomes),
                stats.fmt_s(stats.median_e2e(outcomes)),
                stats.fmt_mb(stats.median_of(outcomes, lambda o: o.max_rss_mb)),
                printed or "-",
            ]
        )
    section = Section("status", TITLE)
    section.lines += [
        f"Each engine's store holds a root whose {n:,} children (waiting on a gate file) had not finished "
        f"when the harness killed the leader, {SETTLE_S:g} s after the first child started.",
        "",
        *table(["command", "runs ok", "time", "peak RSS", "what it printed"], rows),
    ]
    return section
