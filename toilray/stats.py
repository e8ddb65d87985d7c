"""Per-job statistics (``--stats``): recorded by the leader, stored as Parquet, reported by
``toilray stats`` in Toil's table layout, as JSON, or as a self-contained HTML page.

One record per job attempt, failed ones included: category (the job's displayName), wall and
CPU seconds, the worker process's peak memory, the node and process that ran it, and the Ray
task it ran in (a task that ran several jobs is what Toil calls a worker running chained jobs).
The page is drawn with plotly, its JavaScript inlined so that it opens offline.
"""

from __future__ import annotations

import html
import io
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq
from plotly.subplots import make_subplots

from toilray.jobStores.jobStore import JobStore

_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("name", pa.string()), ("category", pa.string()), ("attempt", pa.int32()),
    ("ok", pa.bool_()), ("start", pa.float64()), ("wall", pa.float64()), ("cpu", pa.float64()),
    ("memory_kib", pa.int64()), ("node", pa.string()), ("pid", pa.int64()), ("task", pa.string()),
])


def write_records(store: JobStore, records: Sequence[dict[str, Any]]) -> None:
    """Add one leader session's records to the store (each session writes its own file)."""
    if not records:
        return
    table = pa.Table.from_pylist(list(records), schema=_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    store.write_stats(buffer.getvalue())


def read_records(store: JobStore) -> list[dict[str, Any]]:
    tables = [pq.read_table(io.BytesIO(data)) for data in store.stats_tables()]
    return pa.concat_tables(tables).to_pylist() if tables else []


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
_PALETTE = ("#4e79a7", "#f28e2b", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f", "#bab0ac", "#86bcb6",
            "#8cd17d")
FAILED_COLOUR = "#d62728"


def worker_slots(records: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """Each attempt's lane, (node, slot): a greedy interval partition per node, so that no two
    attempts that overlap in time share a lane and a node has as many lanes as it ran at once."""
    lanes: list[tuple[str, int]] = [("", 0)] * len(records)
    ends: dict[str, list[float]] = defaultdict(list)
    for index in sorted(range(len(records)), key=lambda i: (records[i]["start"], records[i]["wall"])):
        record = records[index]
        node_ends = ends[record["node"]]
        slot = next((s for s, end in enumerate(node_ends) if end <= record["start"]), len(node_ends))
        if slot == len(node_ends):
            node_ends.append(0.0)
        node_ends[slot] = record["start"] + record["wall"]
        lanes[index] = (record["node"], slot + 1)
    return lanes


def _timeline(records: Sequence[dict[str, Any]], colour: dict[str, str]) -> go.Figure:
    """One horizontal bar per attempt on its worker slot, slots grouped by node, on a time axis."""
    start = min(r["start"] for r in records)
    slots = worker_slots(records)
    order = sorted(set(slots))
    row = {lane: index for index, lane in enumerate(order)}
    figure = go.Figure()
    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups["failed attempt" if not record["ok"] else record["category"]].append(index)
    for group, members in sorted(groups.items(), key=lambda item: item[0] == "failed attempt"):
        chosen = [records[i] for i in members]
        failed = group == "failed attempt"
        retried = [r["attempt"] > 1 for r in chosen]
        figure.add_trace(go.Bar(
            name=group, orientation="h", y=[row[slots[i]] for i in members],
            base=[r["start"] - start for r in chosen], x=[r["wall"] for r in chosen],
            text=[r["name"] for r in chosen], textposition="inside", insidetextanchor="middle", textangle=0,
            marker={"color": FAILED_COLOUR if failed else colour[group],
                    "line": {"color": [FAILED_COLOUR if again else "white" for again in retried],
                             "width": [2 if again else 0.5 for again in retried]}},
            customdata=[[r["category"], r["job_id"][:12], r["attempt"], "ok" if r["ok"] else "failed", r["cpu"],
                         r["memory_kib"] / 1024, r["node"], r["pid"]] for r in chosen],
            hovertemplate=("<b>%{text}</b> (%{customdata[0]})<br>job %{customdata[1]}, attempt %{customdata[2]}: "
                           "%{customdata[3]}<br>start %{base:.3f} s, wall %{x:.3f} s, CPU %{customdata[4]:.3f} s"
                           "<br>peak memory %{customdata[5]:.0f} MiB, %{customdata[6]} pid %{customdata[7]}"
                           "<extra></extra>"),
        ))
        if failed:
            # A failed attempt can be too short to see as a bar: a cross marks where each one ended.
            figure.add_trace(go.Scatter(
                name=group, legendgroup=group, showlegend=False, mode="markers", hoverinfo="skip",
                x=[r["start"] + r["wall"] - start for r in chosen], y=[row[slots[i]] for i in members],
                marker={"symbol": "x", "size": 11, "color": FAILED_COLOUR, "line": {"width": 1, "color": "white"}},
            ))
    # A node's name labels its first slot; a line separates one node's slots from the next.
    labels = [f"<b>{html.escape(node)}</b>  slot {slot}" if slot == 1 else f"slot {slot}" for node, slot in order]
    for index, (_, slot) in enumerate(order):
        if slot == 1 and index:
            figure.add_hline(y=index - 0.5, line={"color": "#888", "width": 1})
    figure.update_layout(
        # Tall enough for the lanes, and for the legend without a scroll bar.
        barmode="overlay", bargap=0.15, height=140 + 24 * max(len(order), len(groups) + 1),
        margin={"l": 10, "r": 10, "t": 30, "b": 50},
        uniformtext={"minsize": 9, "mode": "hide"}, legend={"title": {"text": "category"}}, plot_bgcolor="white",
        xaxis={"title": {"text": "seconds since the first job started"}, "rangemode": "tozero", "showgrid": True,
               "gridcolor": "#ddd", "showline": True, "linecolor": "#444", "ticks": "outside"},
        yaxis={"autorange": "reversed", "tickvals": list(range(len(order))), "ticktext": labels, "zeroline": False,
               "range": [len(order) - 0.5, -0.5]},
    )
    return figure


def _per_category(records: Sequence[dict[str, Any]], categories: Sequence[str], colour: dict[str, str]) -> go.Figure:
    """Wall time, CPU time and peak memory of every attempt, one box per category."""
    figure = make_subplots(rows=1, cols=3, subplot_titles=("wall time (s)", "CPU time (s)", "peak memory (MiB)"))
    for category in categories:
        members = [r for r in records if r["category"] == category]
        for column, values in enumerate(([r["wall"] for r in members], [r["cpu"] for r in members],
                                         [r["memory_kib"] / 1024 for r in members]), start=1):
            figure.add_trace(go.Box(y=values, name=category, legendgroup=category, showlegend=column == 1,
                                    marker_color=colour[category], boxpoints="outliers"), row=1, col=column)
    figure.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10}, plot_bgcolor="white")
    figure.update_yaxes(rangemode="tozero", showgrid=True, gridcolor="#ddd")
    return figure


def render_html(records: Sequence[dict[str, Any]], title: str) -> str:
    """One self-contained page (plotly.js inline, nothing fetched when viewed): a timeline of
    every attempt on its node's worker slots, per-category plots and a per-category table."""
    if not records:
        return f"<!doctype html><title>{html.escape(title)}</title><p>No statistics recorded.</p>"
    categories = sorted({r["category"] for r in records})
    colour = {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(categories)}
    failed = sum(1 for r in records if not r["ok"])
    span = max(r["start"] + r["wall"] for r in records) - min(r["start"] for r in records)
    slots = worker_slots(records)
    nodes = {node for node, _ in slots}
    config = {"displaylogo": False, "responsive": True}
    timeline = _timeline(records, colour).to_html(full_html=False, include_plotlyjs=True, config=config,
                                                   div_id="timeline")
    boxes = _per_category(records, categories, colour).to_html(full_html=False, include_plotlyjs=False,
                                                               config=config, div_id="categories")
    rows = []
    for category in categories:
        members = [r for r in records if r["category"] == category]
        rows.append(
            f'<tr><td><span style="color:{colour[category]}">&#9632;</span> {html.escape(category)}</td>'
            f"<td>{len(members)}</td><td>{sum(1 for r in members if not r['ok'])}</td>"
            f"<td>{sum(r['wall'] for r in members):.2f}</td><td>{sum(r['cpu'] for r in members):.2f}</td>"
            f"<td>{max(r['memory_kib'] for r in members)}K</td></tr>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:20px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p id="summary">{len({r["job_id"] for r in records})} job(s), {len(records)} attempt(s)
({failed} failed) over {span:.2f} s in {len(workers(records))} worker(s)
(Ray tasks; chained jobs share one) on {len(nodes)} node(s) ({len(set(slots))} worker slot(s)).</p>
<h2>Timeline</h2>
<p>One lane per worker slot, grouped by node. Red: a failed attempt (a cross where it ended);
a red outline: an attempt after a failure. Hover over a bar for its job.</p>
{timeline}
<h2>Per category</h2>
{boxes}
<table><tr><th>category</th><th>attempts</th><th>failed</th><th>wall s</th><th>CPU s</th><th>peak memory</th></tr>
{"".join(rows)}</table></body></html>
"""


def defaults_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {"cores": meta.get("defaultCores", 1.0), "memory": meta.get("defaultMemory", 2 * 2**30),
            "max_cores": meta.get("maxCores") or float(sys.maxsize)}
