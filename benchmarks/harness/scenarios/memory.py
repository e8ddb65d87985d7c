"""Scenario 7: the leader's peak RSS per 10,000 pending jobs, from the fan-out runs."""

from __future__ import annotations

from harness import stats
from harness.config import TOILRAY_ENGINES
from harness.context import Context
from harness.process import RunOutcome
from harness.report import Section, skipped, table
from harness.scenarios import fanout
from harness.targets import at_most

PER = 10_000
GOAL_MB = 30.0
TITLE = "7. Leader memory per 10,000 pending jobs"


def _runs(ctx: Context) -> dict[int, dict[str, list[RunOutcome]]]:
    """The fan-out runs; measured here (smallest and largest size) if scenario 1 did not run."""
    if not ctx.fanout_runs and ctx.sizes.fanout:
        for n in sorted({min(ctx.sizes.fanout), max(ctx.sizes.fanout)}):
            fanout.measure(ctx, n, fanout.engines_for(ctx, n))
    return ctx.fanout_runs


def run(ctx: Context) -> Section:
    by_n = _runs(ctx)
    if not by_n:
        return skipped("memory", TITLE, "no fan-out sizes configured")
    rows = []
    per_engine: dict[str, float | None] = {}
    for name in fanout.ORDER:
        sizes = sorted(n for n in by_n if stats.ok(by_n[n].get(name, [])))
        if len(sizes) < 2:
            if name in ctx.engines:
                rows.append([name, "-", "-", "-", "-", "-", "fewer than two fan-out sizes ran"])
            continue
        small, large = sizes[0], sizes[-1]
        rss_small = stats.median_of(by_n[small][name], lambda r: r.leader_peak_rss_mb)
        rss_large = stats.median_of(by_n[large][name], lambda r: r.leader_peak_rss_mb)
        tree = stats.median_of(by_n[large][name], lambda r: r.tree_peak_rss_mb)
        per = None
        if rss_small is not None and rss_large is not None:
            per = (rss_large - rss_small) * PER / (large - small)
        per_engine[name] = per
        how = "measured" if large >= PER else f"extrapolated from N={large:,}"
        rows.append(
            [
                name,
                f"{small:,}: {stats.fmt_mb(rss_small)}",
                f"{large:,}: {stats.fmt_mb(rss_large)}",
                "-" if per is None else f"{per:.1f} MB",
                how,
                stats.fmt_mb(tree),
                "process tree: the driver alone (Ray is the local instance's)" if name == "toilray-warm" else "",
            ]
        )
    section = Section("memory", TITLE)
    section.lines += [
        "The leader's peak RSS (`ru_maxrss` of the workflow process; for toilray and plain Ray that is "
        "the Ray driver, not Ray's daemons and workers) in the fan-out runs. All N children are pending "
        "at once, so the growth from the smallest to the largest N, scaled to 10,000, is the cost of "
        "10,000 pending jobs. The last RSS column is the whole process tree (leader, Ray daemons, "
        "workers), sampled every 0.5 s.",
        "",
        *table(
            [
                "engine",
                "smallest N: leader peak RSS",
                "largest N: leader peak RSS",
                "per 10,000 pending",
                "how",
                "process tree at largest N",
                "note",
            ],
            rows,
        ),
    ]
    for engine in TOILRAY_ENGINES:
        per = per_engine.get(engine)
        if engine in ctx.engines:
            section.targets.append(
                at_most(f"leader memory per 10,000 pending jobs ({engine})", f"≤{GOAL_MB:g} MB", per, GOAL_MB,
                        "-" if per is None else f"{per:.1f} MB", " MB")
            )
    return section
