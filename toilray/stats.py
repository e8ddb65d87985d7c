"""Per-job statistics (``--stats``): recorded by the leader, stored as Parquet, reported by
``toilray stats`` in Toil's table layout, as JSON, or as a self-contained HTML page.

One record per job attempt, failed ones included: category (the job's displayName), wall and
CPU seconds, the worker process's peak memory, the node and process that ran it, and the Ray
task it ran in (a task that ran several jobs is what Toil calls a worker running chained jobs).
The page is drawn by ``toilray.stats_page``. In a notebook, :func:`load` gives the records as a
pandas DataFrame and ``toilray.stats_page.timeline`` the page's timeline as a figure shown inline.
"""

from __future__ import annotations

import io
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from toilray.exceptions import NoSuchJobStoreException, ToilrayError
from toilray.jobStores.jobStore import JobStore

if TYPE_CHECKING:
    import pandas
    import pyarrow as pa

# pyarrow (with numpy, about 0.2 s) is imported where records are written or read: every run's
# leader imports this module, and only runs with --stats write any.


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([
        ("job_id", pa.string()), ("name", pa.string()), ("category", pa.string()), ("attempt", pa.int32()),
        ("ok", pa.bool_()), ("start", pa.float64()), ("wall", pa.float64()), ("cpu", pa.float64()),
        ("memory_kib", pa.int64()), ("node", pa.string()), ("pid", pa.int64()), ("task", pa.string()),
        ("cache", pa.string()),
    ])


def write_records(store: JobStore, records: Sequence[dict[str, Any]]) -> None:
    """Add one leader session's records to the store (each session writes its own file)."""
    if not records:
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(list(records), schema=_schema())
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    store.write_stats(buffer.getvalue())


def read_records(store: JobStore) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # One thread: pyarrow's pool could abort the process at exit (seen once in a short CLI run).
    tables = [pq.read_table(io.BytesIO(data), use_threads=False) for data in store.stats_tables()]
    # Tables of sessions before the call cache have no "cache" column: it reads as null there.
    return pa.concat_tables(tables, promote_options="default").to_pylist() if tables else []


class NoStatsError(ToilrayError):
    """The job store holds no statistics (the workflow ran without --stats)."""


def records_of(jobStore: str | JobStore) -> list[dict[str, Any]]:
    """The records of the store (a locator or an open store); NoStatsError when there are none."""
    store = jobStore if isinstance(jobStore, JobStore) else JobStore(str(jobStore))
    if not store.root_exists():
        raise NoSuchJobStoreException(store.locator)
    records = read_records(store)
    if not records:
        raise NoStatsError(f"The job store '{store.locator}' holds no statistics: run the workflow with --stats")
    return records


def load(jobStore: str | JobStore) -> pandas.DataFrame:
    """The statistics of the workflow in ``jobStore`` as a DataFrame, one row per job attempt
    (the records ``toilray stats --json`` prints), ``start`` and ``end`` as UTC timestamps.
    Needs pandas (the ``notebook`` extra)."""
    import pandas

    frame = pandas.DataFrame.from_records(records_of(jobStore))
    frame["end"] = pandas.to_datetime(frame["start"] + frame["wall"], unit="s", utc=True)
    frame["start"] = pandas.to_datetime(frame["start"], unit="s", utc=True)
    return frame.sort_values("start", ignore_index=True)


def _five(values: Sequence[float]) -> tuple[float, float, float, float, float]:
    return min(values), statistics.median(values), statistics.fmean(values), max(values), sum(values)


def workers(records: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The attempts grouped by worker, as Toil counts workers: one batch-system job each.

    Here that is one Ray task: a task that ran a chain of jobs is one worker, as a Toil worker
    running chained jobs is. The table's ``Worker`` section and the page both count these.
    """
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_task[record["task"]].append(record)
    return list(by_task.values())


# Toil's table: a Count column, then four groups of five cells (min, med, ave, max, total).
_GROUPS = ("Time*", "Clock", "Wait", "Memory")
_CELL = 8  # Toil's cell width; a wider number widens its group's column in every block
_COUNT = 9


def _block(count: int, time_: Sequence[float], clock: Sequence[float], memory: Sequence[float]) -> list[list[str]]:
    """One block's row: the count, then each group's five cells, formatted."""
    wait = [t - c for t, c in zip(time_, clock, strict=True)]
    seconds = [[f"{v:.2f}" for v in _five(values)] for values in (time_, clock, wait)]
    return [[str(count)], *seconds, [f"{round(v)}K" for v in _five(memory)]]


def _layout(blocks: Sequence[list[list[str]]]) -> list[int]:
    """Column widths that keep a space before every value and every block aligned."""
    return [max(_COUNT if group == 0 else _CELL, *(len(cell) + 1 for block in blocks for cell in block[group]))
            for group in range(len(_GROUPS) + 1)]


def _render_block(row: list[list[str]], widths: list[int]) -> list[str]:
    """Toil's three lines (header, names, numbers); a group's first cell is one wider, as in Toil."""
    def group(cells: Sequence[str], width: int) -> str:
        return " " + "".join(cell.rjust(width) for cell in cells)

    names = [group(("min", "med*" if i == 0 else "med", "ave", "max", "total"), w) for i, w in enumerate(widths[1:])]
    header = ["Count".rjust(widths[0]), *(name.rjust(len(n)) for name, n in zip(_GROUPS, names, strict=True))]
    return [" |".join(header), " |".join(["n".rjust(widths[0]), *names]),
            " |".join([row[0][0].rjust(widths[0]), *(group(cells, w) for cells, w in zip(row[1:], widths[1:],
                                                                                          strict=True))])]


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.2f}"


def _jobs_per_worker(per_worker: Sequence[int]) -> list[str]:
    """Toil's ``Worker Jobs`` lines: how many jobs (attempts) each worker ran."""
    cells = [_count(v) for v in (min(per_worker), statistics.median(per_worker), statistics.fmean(per_worker),
                                 max(per_worker))]
    width = max(7, *(len(cell) + 1 for cell in cells))
    header = " Worker Jobs  |" + " " + "".join(name.rjust(width) for name in ("min", "med", "ave", "max"))
    return [header, "              |" + " " + "".join(cell.rjust(width) for cell in cells)]


def _attempts(count: int) -> str:
    return f"{count} failed attempt{'' if count == 1 else 's'}"


def render_table(records: Sequence[dict[str, Any]], defaults: dict[str, Any]) -> str:
    """The report of ``toil stats``: header, Worker and Job sections, one block per category.

    As in Toil, every attempt counts, failed ones too; a line under the totals and each
    category's name say how many attempts failed.
    """
    if not records:
        return "No statistics recorded (run the workflow with --stats)."
    runtime = max(r["start"] + r["wall"] for r in records) - min(r["start"] for r in records)
    failed = sum(1 for r in records if not r["ok"])
    lines = [
        "Batch System: ray",
        f"Default Cores: {defaults['cores']:g}  Default Memory: {defaults['memory'] // 1024}K",
        f"Max Cores: {defaults['max_cores']:g}",
        f"Total Clock: {sum(r['cpu'] for r in records):.2f}  Total Runtime: {runtime:.2f}",
    ]
    if failed:
        lines.append(f"Failed: {_attempts(failed)} of {len(records)}, all counted below")
    hits = sum(1 for r in records if r.get("cache") == "hit")
    misses = sum(1 for r in records if r.get("cache") == "miss")
    if hits or misses:
        lines.append(f"Call cache: {hits} hit(s), {misses} miss(es)")
    tasks = workers(records)
    categories: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        categories[record["category"]].append(record)
    ordered = sorted(categories.items(), key=lambda item: statistics.median(r["wall"] for r in item[1]))
    worker_row = _block(len(tasks), [sum(r["wall"] for r in t) for t in tasks],
                        [sum(r["cpu"] for r in t) for t in tasks], [max(r["memory_kib"] for r in t) for t in tasks])
    rows = [_block(len(members), [r["wall"] for r in members], [r["cpu"] for r in members],
                   [r["memory_kib"] for r in members]) for members in [list(records)] + [m for _, m in ordered]]
    widths = _layout([worker_row, *rows])
    lines += ["Worker", *_render_block(worker_row, widths), "Job", *_jobs_per_worker([len(t) for t in tasks]),
              *_render_block(rows[0], widths)]
    for (name, members), row in zip(ordered, rows[1:], strict=True):
        failures = sum(1 for r in members if not r["ok"])
        lines.append(f" {name}" + (f"  ({_attempts(failures)})" if failures else ""))
        lines += _render_block(row, widths)
    return "\n".join(lines)


# Category colours (Tableau 10 without its red), and the one colour a failed attempt has.
def defaults_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {"cores": meta.get("defaultCores", 1.0), "memory": meta.get("defaultMemory", 2 * 2**30),
            "max_cores": meta.get("maxCores") or float(sys.maxsize)}
