"""Shared main-program code of the workflow scripts: options, timing and the result line.

Every script prints exactly one line starting with ``BENCH_RESULT`` followed by a JSON
object; the harness reads that line. ``wall_s`` runs from before ``with Toil(...)`` to after
``start`` (or ``restart``) returns and any export that follows.
"""

from __future__ import annotations

import json
import resource
import time
from argparse import ArgumentParser, Namespace
from collections.abc import Callable
from typing import Any

from engine import ENGINE, Job, Toil

RESULT_MARK = "BENCH_RESULT"


def parse_options(add_arguments: Callable[[ArgumentParser], None]) -> Namespace:
    """Toil's own option parser plus the workflow's arguments."""
    parser = Job.Runner.getDefaultArgumentParser()
    add_arguments(parser)
    return parser.parse_args()


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(record: dict[str, Any]) -> None:
    print(f"{RESULT_MARK} {json.dumps(record, default=str)}", flush=True)


def run_workflow(
    options: Namespace,
    make_root: Callable[[Any], Any],
    finish: Callable[[Any, Any], Any] | None = None,
) -> None:
    """Start (or restart) the workflow and emit its result line.

    ``make_root(toil)`` builds the root job (it may import files first); ``finish(toil,
    value)`` turns the workflow's return value into the reported result (it may export).
    """
    started = time.perf_counter()
    with Toil(options) as toil:
        value = toil.restart() if options.restart else toil.start(make_root(toil))
        result = finish(toil, value) if finish is not None else value
        wall = time.perf_counter() - started
    emit({"engine": ENGINE, "wall_s": wall, "result": result, "leader_peak_rss_mb": peak_rss_mb()})
