"""Judging a measurement against one of the issue's targets, saying by how much it misses."""

from __future__ import annotations

from harness.report import Target


def at_least(
    name: str, goal: str, value: float | None, threshold: float, shown: str, note: str = ""
) -> Target:
    """A target met when ``value >= threshold`` (speed-ups, rates)."""
    if value is None:
        return Target(name, goal, "-", None, "no successful runs to measure")
    met = value >= threshold
    if met:
        detail = ""
    elif value > 0:
        detail = f"missed: {value:.3g} is {threshold / value:.3g}x short of {threshold:g}"
    else:
        detail = f"missed: {value:.3g} against {threshold:g}"
    return Target(name, goal, shown, met, "; ".join(p for p in (detail, note) if p))


def at_most(
    name: str, goal: str, value: float | None, threshold: float, shown: str, unit: str = "", note: str = ""
) -> Target:
    """A target met when ``value <= threshold`` (ratios to a baseline, memory)."""
    if value is None:
        return Target(name, goal, "-", None, "no successful runs to measure")
    met = value <= threshold
    over = value - threshold
    factor = f" ({value / threshold:.3g}x the limit)" if threshold > 0 else ""
    detail = "" if met else f"missed by {over:.3g}{unit}{factor}"
    return Target(name, goal, shown, met, "; ".join(p for p in (detail, note) if p))
