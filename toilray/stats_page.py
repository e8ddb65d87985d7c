"""The ``toilray stats --html`` page: a picture of a run drawn with plotly, its JavaScript
inlined so that the page opens offline. Its own module so that a run, which records
statistics through ``toilray.stats``, never loads plotly."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from toilray.jobStores.jobStore import JobStore
from toilray.stats import records_of, workers

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


def timeline(jobStore: str | JobStore) -> go.Figure:
    """The page's timeline of the workflow in ``jobStore`` (every attempt on its node's worker
    slots) as a plotly figure: a notebook shows it inline."""
    records = records_of(jobStore)
    categories = sorted({r["category"] for r in records})
    return _timeline(records, {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(categories)})


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
