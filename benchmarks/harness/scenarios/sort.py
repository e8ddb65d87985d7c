"""Scenario 3: merge sort of a generated file (after the Toil manual's sort example)."""

from __future__ import annotations

import math

from harness import inputs, stats
from harness.context import Context
from harness.process import RunOutcome
from harness.report import Section, table

ORDER = ["toil", "toilray", "toilray-warm"]


def one(ctx: Context, engine: str, source: str, expected: str) -> RunOutcome:
    label = f"sort {ctx.sizes.sort_lines} lines {engine}"
    with ctx.scratch(label) as directory:
        out = directory / "sorted.txt"
        args = ["--input", source, "--out", str(out), "--split", str(ctx.sizes.sort_split)]
        outcome = ctx.run_workflow(engine, "mergesort.py", args, label, directory)
        if outcome.ok and (not out.exists() or inputs.sha256_of(out) != expected):
            ctx.fail(outcome, "the exported file is not the input sorted")
    return outcome


def run(ctx: Context) -> Section:
    sizes = ctx.sizes
    source = ctx.input_path(f"sort-{sizes.sort_lines}.txt")
    expected = inputs.lines_to_sort(source, sizes.sort_lines, sizes.sort_line_length)
    runs = ctx.repeat(ctx.usable(ORDER), lambda engine, _rep: one(ctx, engine, str(source), expected))
    base = runs.get("toilray", [])
    rows = []
    for name in ORDER:
        if name in runs:
            r = runs[name]
            rows.append(
                [
                    name,
                    stats.runs_ok(r),
                    stats.fmt_s(stats.median_e2e(r)),
                    stats.fmt_s(stats.median_inner(r)),
                    stats.fmt_mb(stats.median_of(r, lambda o: o.leader_peak_rss_mb)),
                    "-"
                    if name == "toilray"
                    else stats.fmt_ratio(stats.ratio(stats.median_e2e(r), stats.median_e2e(base))),
                    "-"
                    if name == "toilray"
                    else stats.fmt_ratio(stats.ratio(stats.median_inner(r), stats.median_inner(base))),
                ]
            )
        elif name in ctx.unusable([name]):
            rows.append([name, "skipped: " + ctx.unusable([name])[name], "-", "-", "-", "-", "-"])
    size_mb = source.stat().st_size / 1e6
    pieces = 2 ** max(0, math.ceil(math.log2(source.stat().st_size / sizes.sort_split)))
    section = Section("sort", f"3. Merge sort of {sizes.sort_lines:,} lines")
    section.lines += [
        f"Input: {sizes.sort_lines:,} random lines of {sizes.sort_line_length} characters "
        f"({size_mb:.1f} MB); "
        f"pieces of at most {sizes.sort_split:,} bytes are sorted in one job (about {pieces:,} leaves; the "
        "manual's default of 10,000 bytes would make Toil's run last many minutes). Each run's exported "
        "file is checked against the sorted input.",
        "",
        *table(
            [
                "engine",
                "runs ok",
                "end to end",
                "in workflow",
                "leader peak RSS",
                "end to end vs toilray",
                "in workflow vs toilray",
            ],
            rows,
        ),
    ]
    return section
