"""Per-job statistics (``--stats``): recorded by the leader, stored as Parquet, reported by
``toilray stats`` in Toil's table layout, as JSON, or as a self-contained HTML page.

One record per job attempt: category (the job's displayName), wall and CPU seconds, the
worker process's peak memory, the node and process that ran it, and the Ray task it ran in
(a task that ran several jobs is what Toil calls a worker running chained jobs).
"""

from __future__ import annotations

import html
import io
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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


def _block(count: int, time_: Sequence[float], clock: Sequence[float], memory: Sequence[float]) -> list[str]:
    """Toil's three-line table: Count | Time* | Clock | Wait | Memory, min/med/ave/max/total."""
    wait = [t - c for t, c in zip(time_, clock, strict=True)]
    group = "      min    med*     ave     max   total"
    plain = "      min     med     ave     max   total"
    header = "    Count |" + " |".join(f"{name:>41}" for name in ("Time*", "Clock", "Wait", "Memory"))
    names = "        n |" + group + " |" + " |".join([plain] * 3)

    def numbers(values: Sequence[float], memory_unit: bool) -> str:
        cells = [f"{int(v)}K" if memory_unit else f"{v:.2f}" for v in _five(values)]
        return f"{cells[0]:>9}" + "".join(f"{c:>8}" for c in cells[1:])

    row = (f"{count:>9} |" + numbers(time_, False) + " |" + numbers(clock, False) + " |" + numbers(wait, False)
           + " |" + numbers(memory, True))
    return [header, names, row]


def render_table(records: Iterable[dict[str, Any]], defaults: dict[str, Any]) -> str:
    """The report of ``toil stats``: header, Worker and Job sections, one block per category."""
    jobs = [r for r in records if r["ok"]]
    if not jobs:
        return "No statistics recorded (run the workflow with --stats)."
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in jobs:
        by_task[record["task"]].append(record)
    runtime = max(r["start"] + r["wall"] for r in jobs) - min(r["start"] for r in jobs)
    lines = [
        "Batch System: ray",
        f"Default Cores: {defaults['cores']:g}  Default Memory: {defaults['memory'] // 1024}K",
        f"Max Cores: {defaults['max_cores']:g}",
        f"Total Clock: {sum(r['cpu'] for r in jobs):.2f}  Total Runtime: {runtime:.2f}",
        "Worker",
    ]
    tasks = list(by_task.values())
    lines += _block(len(tasks), [sum(r["wall"] for r in t) for t in tasks], [sum(r["cpu"] for r in t) for t in tasks],
                    [max(r["memory_kib"] for r in t) for t in tasks])
    per_worker = [len(t) for t in tasks]
    lines += ["Job", " Worker Jobs  |     min    med    ave    max",
              f"              |{min(per_worker):>8}{statistics.median(per_worker):>7g}"
              f"{statistics.fmean(per_worker):>7g}{max(per_worker):>7}"]
    lines += _block(len(jobs), [r["wall"] for r in jobs], [r["cpu"] for r in jobs], [r["memory_kib"] for r in jobs])
    categories: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in jobs:
        categories[record["category"]].append(record)
    for name, members in sorted(categories.items(), key=lambda item: statistics.median(r["wall"] for r in item[1])):
        lines.append(f" {name}")
        lines += _block(len(members), [r["wall"] for r in members], [r["cpu"] for r in members],
                        [r["memory_kib"] for r in members])
    return "\n".join(lines)


def render_html(records: Sequence[dict[str, Any]], title: str) -> str:
    """A self-contained page: a timeline (one bar per job, on its node's process lane) and a
    table of time, CPU and memory per category."""
    jobs = [r for r in records if r["ok"]] or list(records)
    if not jobs:
        return f"<!doctype html><title>{html.escape(title)}</title><p>No statistics recorded.</p>"
    start = min(r["start"] for r in jobs)
    end = max(r["start"] + r["wall"] for r in jobs)
    span = max(end - start, 1e-6)
    lanes = sorted({(r["node"], r["pid"]) for r in jobs})
    lane_of = {lane: i for i, lane in enumerate(lanes)}
    categories = sorted({r["category"] for r in jobs})
    palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"]
    colour = {c: palette[i % len(palette)] for i, c in enumerate(categories)}
    width, lane_height, left = 900, 22, 170
    bars = []
    for r in jobs:
        x = left + (r["start"] - start) / span * (width - left - 10)
        w = max(r["wall"] / span * (width - left - 10), 1.5)
        y = 10 + lane_of[(r["node"], r["pid"])] * lane_height
        tip = html.escape(f"{r['category']} ({r['name']}): {r['wall']:.3f} s wall, {r['cpu']:.3f} s CPU")
        bars.append(f'<rect class="job" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{lane_height - 6}" '
                    f'fill="{colour[r["category"]]}"><title>{tip}</title></rect>')
    labels = [f'<text x="4" y="{10 + i * lane_height + 12}" font-size="11">'
              f"{html.escape(node)} pid {pid}</text>" for (node, pid), i in lane_of.items()]
    height = 20 + len(lanes) * lane_height
    rows = []
    for category in categories:
        members = [r for r in jobs if r["category"] == category]
        rows.append(
            f'<tr><td><span style="color:{colour[category]}">&#9632;</span> {html.escape(category)}</td>'
            f"<td>{len(members)}</td><td>{sum(r['wall'] for r in members):.2f}</td>"
            f"<td>{sum(r['cpu'] for r in members):.2f}</td><td>{max(r['memory_kib'] for r in members)}K</td></tr>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:20px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(jobs)} job(s) over {span:.2f} s on {len(lanes)} worker process(es).</p>
<svg id="timeline" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">
{"".join(labels)}{"".join(bars)}</svg>
<h2>Per category</h2>
<table><tr><th>category</th><th>jobs</th><th>wall s</th><th>CPU s</th><th>peak memory</th></tr>
{"".join(rows)}</table></body></html>
"""


def defaults_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {"cores": meta.get("defaultCores", 1.0), "memory": meta.get("defaultMemory", 2 * 2**30),
            "max_cores": meta.get("maxCores") or float(sys.maxsize)}
