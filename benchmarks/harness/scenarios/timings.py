"""The timing table shared by the job-graph scenarios: one row per engine and size."""

from __future__ import annotations

from harness import stats
from harness.context import Context
from harness.process import RunOutcome

HEADERS = [
    "size",
    "engine",
    "runs ok",
    "end to end",
    "in workflow",
    "jobs/s (in workflow)",
    "leader peak RSS",
    "end to end vs toilray",
    "in workflow vs toilray",
]


def rows(
    ctx: Context, size: str, runs: dict[str, list[RunOutcome]], jobs: dict[str, int], order: list[str]
) -> list[list[str]]:
    """Rows for one size; engines in ``order`` that could not run get a 'skipped' row."""
    base = runs.get("toilray", [])
    base_e2e, base_inner = stats.median_e2e(base), stats.median_inner(base)
    out = []
    for name in order:
        if name in runs:
            engine_runs = runs[name]
            e2e, inner = stats.median_e2e(engine_runs), stats.median_inner(engine_runs)
            rate = stats.ratio(float(jobs[name]), inner)
            out.append(
                [
                    size,
                    name,
                    stats.runs_ok(engine_runs),
                    stats.fmt_s(e2e),
                    stats.fmt_s(inner),
                    stats.fmt_rate(rate),
                    stats.fmt_mb(stats.median_of(engine_runs, lambda r: r.leader_peak_rss_mb)),
                    "-" if name == "toilray" else stats.fmt_ratio(stats.ratio(e2e, base_e2e)),
                    "-" if name == "toilray" else stats.fmt_ratio(stats.ratio(inner, base_inner)),
                ]
            )
        elif name in ctx.unusable([name]):
            out.append([size, name, "skipped: " + ctx.unusable([name])[name], *["-"] * 6])
    return out


def check_result(ctx: Context, outcome: RunOutcome, expected: object) -> RunOutcome:
    if outcome.ok and outcome.record.get("result") != expected:
        return ctx.fail(outcome, f"wrong result {outcome.record.get('result')!r}, expected {expected!r}")
    return outcome
