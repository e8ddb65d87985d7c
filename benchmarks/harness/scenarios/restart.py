"""Scenario 5: kill the leader halfway through a fan-out, then time ``--restart`` and count
the jobs that ran again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness import stats
from harness.config import TOILRAY_ENGINES
from harness.context import Context
from harness.process import RunOutcome
from harness.report import Section, Target, table
from toilray.jobStores.jobStore import JobStore

ORDER = ["toil", "toilray", "toilray-warm"]
# After the kill, the marks must stay unchanged this long before they are counted: a warm
# run's Ray workers belong to the local Ray instance, not to the killed process tree, and
# run on until Ray has noticed that their driver is gone.
QUIET_S = 2.0
QUIET_MAX_S = 60.0


class LineCounter:
    """Counts the lines of a growing file, reading only what was added since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.count = 0

    def __call__(self) -> int:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return self.count
        self.offset += len(data)
        self.count += data.count(b"\n")
        return self.count


@dataclass(slots=True)
class RestartRun:
    outcome: RunOutcome
    jobs: int
    done_before: int = 0
    ran_after: int = 0
    reexecuted: int = 0
    committed_rerun: int | None = None


def read_marks(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    marks = []
    for line in path.read_text().splitlines():
        job_id, _, index = line.rpartition(" ")
        if job_id and index.isdigit():
            marks.append((job_id, int(index)))
    return marks


def committed_ids(engine: str, store: Path) -> set[str] | None:
    """Jobs whose completion the store records: toilray's commit records. Toil keeps no such
    per-job record that the harness can read, so None there."""
    return set(JobStore(f"file:{store}").committed_ids()) if engine in TOILRAY_ENGINES else None


def wait_until_quiet(counter: LineCounter) -> None:
    """Return once no mark was added for ``QUIET_S`` (at most ``QUIET_MAX_S``)."""
    deadline = time.monotonic() + QUIET_MAX_S
    count, since = counter(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < QUIET_S:
        time.sleep(0.1)
        if counter() != count:
            count, since = counter(), time.monotonic()


def one(ctx: Context, engine: str) -> RestartRun:
    n = ctx.sizes.restart_jobs if engine in TOILRAY_ENGINES else ctx.sizes.restart_jobs_toil
    label = f"restart N={n} {engine}"
    with ctx.scratch(label) as directory:
        store, marks = directory / "store", directory / "marks"
        counter = LineCounter(marks)
        args = ["--jobs", str(n), "--marks", str(marks), "--sleep", str(ctx.sizes.restart_sleep_s)]
        first = ctx.run_workflow(
            engine,
            "markedfanout.py",
            args,
            f"{label} (to be killed)",
            directory / "first",
            clean="never",
            job_store=store,
            stop_when=lambda: counter() >= n // 2,
        )
        if first.killed:
            ctx.finish(first)
            wait_until_quiet(counter)
        else:
            why = first.error or "it finished before half of its jobs were done; no restart to measure"
            return RestartRun(ctx.fail(first, f"the run to be killed: {why}"), n)
        committed = committed_ids(engine, store)
        before_path = directory / "marks.before"
        marks.rename(before_path)
        restart = ctx.run_workflow(
            engine,
            "markedfanout.py",
            ["--restart", "--marks", str(marks)],
            f"{label} --restart",
            directory / "restart",
            job_store=store,
        )
        if restart.ok and restart.record.get("result") != n * (n - 1) // 2:
            ctx.fail(restart, f"wrong result {restart.record.get('result')!r} after the restart")
        before, after = read_marks(before_path), read_marks(marks)
        done_before = {index for _, index in before}
        run = RestartRun(
            restart, n, len(done_before), len(after), sum(1 for _, index in after if index in done_before)
        )
        if committed is not None:
            run.committed_rerun = sum(1 for job_id, _ in after if job_id in committed)
        return run


def _median_int(runs: list[RestartRun], get: str) -> str:
    value = stats.median(getattr(r, get) for r in runs if r.outcome.ok and getattr(r, get) is not None)
    return "-" if value is None else f"{value:,.0f}"


def run(ctx: Context) -> Section:
    results: dict[str, list[RestartRun]] = {name: [] for name in ctx.usable(ORDER)}

    def run_one(engine: str, _rep: int) -> RunOutcome:
        restart_run = one(ctx, engine)
        results[engine].append(restart_run)
        return restart_run.outcome

    ctx.repeat(ctx.usable(ORDER), run_one)
    rows = []
    for name, runs in results.items():
        outcomes = [r.outcome for r in runs]
        rows.append(
            [
                name,
                f"{runs[0].jobs:,}" if runs else "-",
                stats.runs_ok(outcomes),
                _median_int(runs, "done_before"),
                stats.fmt_s(stats.median_e2e(outcomes)),
                stats.fmt_s(stats.median_inner(outcomes)),
                _median_int(runs, "ran_after"),
                _median_int(runs, "reexecuted"),
                _median_int(runs, "committed_rerun") if name in TOILRAY_ENGINES else "n/a",
            ]
        )
    rows += [[name, "-", "skipped: " + why, *["-"] * 6] for name, why in ctx.unusable(ORDER).items()]
    section = Section("restart", "5. Restart after killing the leader halfway")
    section.lines += [
        f"A fan-out whose {ctx.sizes.restart_jobs:,} children (Toil: {ctx.sizes.restart_jobs_toil:,}; "
        f"each sleeps {ctx.sizes.restart_sleep_s:g} s) append a mark when their work is done. The harness "
        "SIGKILLs the leader's whole process tree once half the marks are there (toilray-warm: the tree is "
        "the driver; the local Ray instance ends its tasks), waits until no mark has been added for "
        f"{QUIET_S:g} s, then times `--restart` to completion. *Re-executed*: children that had finished "
        "before the kill and ran again. *Committed "
        "re-run*: children re-run although their commit record was in the job store at the kill (must be 0).",
        "",
        *table(
            [
                "engine",
                "children",
                "runs ok",
                "finished before kill",
                "restart end to end",
                "restart in workflow",
                "children run after restart",
                "re-executed",
                "committed re-run",
            ],
            rows,
        ),
    ]
    section.targets += [
        _no_committed_rerun(engine, results.get(engine, [])) for engine in TOILRAY_ENGINES if engine in ctx.engines
    ]
    return section


def _no_committed_rerun(engine: str, runs: list[RestartRun]) -> Target:
    measured = [r for r in runs if r.outcome.ok and r.committed_rerun is not None]
    worst = max((r.committed_rerun or 0 for r in measured), default=None)
    name, goal = f"restart re-runs no committed job ({engine})", "0 committed jobs re-run"
    if worst is None:
        return Target(name, goal, "-", None, "no successful restart to measure")
    return Target(
        name,
        goal,
        f"{worst} (worst of {len(measured)} runs)",
        worst == 0,
        "" if worst == 0 else f"missed: {worst} committed job(s) ran again",
    )
