"""Human-readable sizes, parsed the way Toil 9 parses them ('G' is 10**9, 'Gi' is 2**30)."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "p": 10**15,
    "e": 10**18,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
    "pi": 2**50,
    "ei": 2**60,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def human2bytes(text: str | int | float) -> int:
    """Parse '2G', '100M', '1.5Gi', '512' (bytes) or a number into a byte count."""
    if isinstance(text, bool):
        raise ValueError(f"Not a size: {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"Sizes cannot be negative: {text!r}")
        return int(text)
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"Not a size: {text!r} (expected a number with an optional unit like 2G or 512Mi)")
    number, unit = match.groups()
    unit = unit.lower()
    if unit.endswith("b") and unit != "b":
        unit = unit[:-1]
    if unit not in _UNITS:
        raise ValueError(f"Unknown size unit in {text!r}")
    return int(float(number) * _UNITS[unit])


def bytes2human(n: int | float) -> str:
    """A byte count as people write it: '900 TB', '2 GiB', '77.3 GB', '512 B'.

    Decimal units (Toil 9's 'T', 'G': 10**12, 10**9) unless only binary ones ('Ti', 'Gi') say the
    number exactly to one decimal, so that a size shows as the user most likely spelled it.
    """
    if n < 0:
        raise ValueError(f"Sizes cannot be negative: {n!r}")
    decimal = _scaled(n, 1000, "")
    binary = _scaled(n, 1024, "i")
    return binary[0] if binary[1] and not decimal[1] else decimal[0]


def _scaled(n: int | float, base: int, infix: str) -> tuple[str, bool]:
    """``n`` in the largest unit of ``base`` below it, to one decimal; whether that is exact."""
    value = float(n)
    for unit in ("", "K", "M", "G", "T", "P"):
        if value < base or unit == "P":
            break
        value /= base
    if not unit:
        return f"{int(n)} B", True
    text = f"{value:.1f}".removesuffix(".0")
    exact = float(text) * _UNITS[f"{unit}{infix}".lower()] == n
    return f"{text} {unit}{infix}B", exact
