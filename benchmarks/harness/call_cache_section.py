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


def _machine(machine: dict[str, Any]) -> str:
    return describe_text(machine).rsplit("; load average", 1)[0]


def load(path: Path) -> Section | None:
    return section(json.loads(path.read_text())) if path.exists() else None


def section(data: dict[str, Any]) -> Section:
    lines = [
        f"Measured {data['date']} with `{data['command']}` on {_machine(data['machine'])}, under load: load "
        f"average {data['load_after']:.1f} at the end (5 engineers share this machine). "
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
    lines += [
        "A hit still issues a task per job (a cached job that made successors makes them again, and each is "
        "looked up on its own), and copies the files its entry holds into the new job store: the merge sort, "
        "whose jobs mostly split and merge files, gains less than a workflow whose tools compute. Filling the "
        "cache (first run) costs a copy of each result file into it.",
        "",
    ]
    return Section("call-cache", TITLE, lines)
