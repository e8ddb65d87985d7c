"""Medians over repetitions and the number formats used in RESULTS.md."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

from harness.process import RunOutcome


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ok(runs: list[RunOutcome]) -> list[RunOutcome]:
    return [run for run in runs if run.ok]


def median_e2e(runs: list[RunOutcome]) -> float | None:
    return median(run.e2e_s for run in ok(runs))


def median_inner(runs: list[RunOutcome]) -> float | None:
    return median(run.inner_s for run in ok(runs))


def median_of(runs: list[RunOutcome], get: Callable[[RunOutcome], Any]) -> float | None:
    values = []
    for run in ok(runs):
        value = get(run)
        if isinstance(value, int | float):
            values.append(float(value))
    return median(values)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def fmt_mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def runs_ok(runs: list[RunOutcome]) -> str:
    return f"{len(ok(runs))}/{len(runs)}"
