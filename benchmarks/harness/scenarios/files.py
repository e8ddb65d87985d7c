"""Scenario 4: one big global file written and read back; many jobs reading one file."""

from __future__ import annotations

from pathlib import Path

from harness import inputs, stats
from harness.config import TOILRAY_ENGINES
from harness.context import Context
from harness.process import RunOutcome
from harness.report import Section, Target, table
from harness.targets import at_most

ORDER = ["toil", "toilray", "toilray-warm"]


def _size(n: int) -> str:
    return (
        f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB" if n % 2**20 == 0 else f"{n / 1e6:g} MB"
    )


def copy_once(ctx: Context, source: Path, label: str) -> RunOutcome:
    """A plain ``cp`` of the file on the same file system: the baseline."""
    with ctx.scratch(label) as directory:
        argv = ["cp", str(source), str(directory / "copy")]
        return ctx.run_command("cp", argv, label, directory, expect_record=False)


def big_one(ctx: Context, engine: str, source: Path) -> RunOutcome:
    if engine == "cp":
        return copy_once(ctx, source, "big file cp")
    label = f"big file {engine}"
    with ctx.scratch(label) as directory:
        outcome = ctx.run_workflow(engine, "bigfile.py", ["--input", str(source)], label, directory)
    result = outcome.record.get("result") or {}
    if outcome.ok and result.get("bytes") != source.stat().st_size:
        ctx.fail(outcome, f"read back {result.get('bytes')} bytes, expected {source.stat().st_size}")
    return outcome


def shared_one(ctx: Context, engine: str, source: Path) -> RunOutcome:
    if engine == "cp":
        return copy_once(ctx, source, "shared file cp")
    readers = ctx.sizes.shared_readers
    label = f"shared file {readers} readers {engine}"
    with ctx.scratch(label) as directory:
        args = ["--input", str(source), "--readers", str(readers)]
        outcome = ctx.run_workflow(engine, "sharedread.py", args, label, directory)
    result = outcome.record.get("result") or {}
    if outcome.ok and result.get("bytes") != readers * source.stat().st_size:
        ctx.fail(
            outcome,
            f"readers saw {result.get('bytes')} bytes in all, expected {readers * source.stat().st_size}",
        )
    return outcome


def _field(runs: list[RunOutcome], key: str) -> float | None:
    return stats.median_of(runs, lambda r: (r.record.get("result") or {}).get(key))


def _skips(ctx: Context, columns: int) -> list[list[str]]:
    return [[name, "skipped: " + why, *["-"] * (columns - 2)] for name, why in ctx.unusable(ORDER).items()]


def _big(ctx: Context, section: Section) -> None:
    size = ctx.sizes.big_file_bytes
    source = inputs.random_file(ctx.input_path(f"big-{size}.bin"), size)
    runs = ctx.repeat([*ctx.usable(ORDER), "cp"], lambda engine, _rep: big_one(ctx, engine, source))
    copy = stats.median_e2e(runs["cp"])
    rows = [
        [
            name,
            stats.runs_ok(r),
            stats.fmt_s(stats.median_e2e(r)),
            stats.fmt_s(stats.median_inner(r)),
            stats.fmt_s(_field(r, "write_s")),
            stats.fmt_s(_field(r, "read_s")),
            stats.fmt_ratio(stats.ratio(_field(r, "read_s"), copy)),
        ]
        for name, r in runs.items()
        if name != "cp"
    ]
    rows.append(["`cp` of the file", stats.runs_ok(runs["cp"]), stats.fmt_s(copy), "-", "-", "-", "1x"])
    section.lines += [
        f"### Write and read back one {_size(size)} global file",
        "",
        "A job stores the file with `writeGlobalFile`; its follow-on reads it with `readGlobalFile` "
        "(default arguments). The two calls are timed inside the jobs. Toil may chain the follow-on into the "
        "same worker and may upload written files after the job returns.",
        "",
        *table(
            [
                "engine",
                "runs ok",
                "end to end",
                "in workflow",
                "writeGlobalFile",
                "readGlobalFile",
                "read vs `cp`",
            ],
            rows + _skips(ctx, 7),
        ),
    ]
    for engine in TOILRAY_ENGINES:
        if engine in ctx.engines:
            section.targets.append(_read_target(engine, size, _field(runs.get(engine, []), "read_s"), copy))


def _read_target(engine: str, size: int, read: float | None, copy: float | None) -> Target:
    name = f"read a {_size(size)} global file (file job store, {engine})"
    goal = "no more than a `cp` of it"
    if copy is None:
        return Target(name, goal, "-", None, "the `cp` baseline failed")
    return at_most(name, goal, read, copy, f"{stats.fmt_s(read)} vs `cp` {stats.fmt_s(copy)}", " s")


def _shared(ctx: Context, section: Section) -> None:
    size, readers = ctx.sizes.shared_file_bytes, ctx.sizes.shared_readers
    source = inputs.random_file(ctx.input_path(f"shared-{size}.bin"), size)
    runs = ctx.repeat([*ctx.usable(ORDER), "cp"], lambda engine, _rep: shared_one(ctx, engine, source))
    copy = stats.median_e2e(runs["cp"])
    rows = [
        [
            name,
            stats.runs_ok(r),
            stats.fmt_s(stats.median_e2e(r)),
            stats.fmt_s(stats.median_inner(r)),
            stats.fmt_s(_field(r, "max_read_s")),
            stats.fmt_s(_field(r, "sum_read_s")),
        ]
        for name, r in runs.items()
        if name != "cp"
    ]
    section.lines += [
        f"### {readers} jobs on one node reading one {_size(size)} file",
        "",
        f"The leader imports the file; {readers} child jobs each `readGlobalFile` it. One `cp` of the file "
        f"takes {stats.fmt_s(copy)} here ({stats.fmt_s(copy * readers if copy is not None else None)} for "
        f"{readers} copies).",
        "",
        *table(
            ["engine", "runs ok", "end to end", "in workflow", "slowest read", "all reads together"],
            rows + _skips(ctx, 6),
        ),
    ]


def run(ctx: Context) -> Section:
    section = Section("files", "4. Files")
    _big(ctx, section)
    _shared(ctx, section)
    return section
