"""The "Call cache" section of RESULTS.md, from the JSON that ``benchmarks/call_cache.py`` writes."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from harness.machine import describe_text
from harness.report import Section, table

TITLE = "Call cache: second runs with and without it"
VARIANTS = [("no cache", "without the call cache (any run)"), ("cache, first run", "with it, first run (fills it)"),
            ("cache, second run", "with it, second run")]


def load(path: Path) -> Section | None:
    return section(json.loads(path.read_text())) if path.exists() else None


def section(data: dict[str, Any]) -> Section:
    lines = [
        f"Measured {data['date']} with `{data['command']}` on {describe_text(data['machine'])} "
        f"(load average {data['load_after']:.1f} at the end: 5 engineers share this machine). "
        f"Each run is a new process with a new job store on the warm shared local Ray; medians of "
        f"{data['repetitions']} run(s), end to end.",
        "",
    ]
    rows = []
    for workflow in data["workflows"]:
        times = {name: statistics.median(values) for name, values in workflow["times"].items()}
        cached = times["cache, second run"]
        rows.append([workflow["name"], *(f"{times[name]:.1f} s" for name, _ in VARIANTS),
                     f"{times['no cache'] / cached:.1f}x", workflow["second_run"]])
    lines += table(["workflow", *(label for _, label in VARIANTS), "second run vs no cache",
                    "second run's log"], rows)
    return Section("call-cache", TITLE, lines)
