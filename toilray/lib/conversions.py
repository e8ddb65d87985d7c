"""Sizes, durations and flags as Toil 9's ``toil.lib.conversions`` converts them ('G' is 10**9,
'Gi' is 2**30), and toilray's own readable sizes for its messages (``readable_size``)."""

from __future__ import annotations

import math
import re
import urllib.parse
from typing import SupportsInt

KIB, MIB, GIB, TIB, PIB, EIB = (2 ** (10 * power) for power in range(1, 7))
KB, MB, GB, TB, PB, EB = (10 ** (3 * power) for power in range(1, 7))

_UNITS = {
    "b": 1,
    "k": KB, "m": MB, "g": GB, "t": TB, "p": PB, "e": EB,
    "ki": KIB, "mi": MIB, "gi": GIB, "ti": TIB, "pi": PIB, "ei": EIB,
}
# Toil's spellings: each prefix alone or with a trailing 'b', in any case.
BINARY_PREFIXES = [*(p for p in _UNITS if p.endswith("i")), *(f"{p}b" for p in _UNITS if p.endswith("i"))]
DECIMAL_PREFIXES = ["b", *(p for p in _UNITS if len(p) == 1 and p != "b"),
                    *(f"{p}b" for p in _UNITS if len(p) == 1 and p != "b")]
VALID_PREFIXES = BINARY_PREFIXES + DECIMAL_PREFIXES

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def bytes_in_unit(unit: str = "B") -> int:
    """Bytes in one ``unit`` ('Ki', 'MiB', 'G', 'b'...); 1 for a unit Toil does not know, as Toil's."""
    lowered = unit.lower()
    if lowered.endswith("b") and lowered != "b":
        lowered = lowered[:-1]
    return _UNITS.get(lowered, 1)


def _check_unit(unit: str) -> None:
    if unit.lower() not in VALID_PREFIXES:
        raise RuntimeError(f"{unit} not a valid unit, valid units are {VALID_PREFIXES}.")


def convert_units(num: float, src_unit: str, dst_unit: str = "B") -> float:
    """``num`` ``src_unit``s in ``dst_unit``s; RuntimeError for an unknown unit (Toil's error)."""
    _check_unit(src_unit)
    _check_unit(dst_unit)
    return (num * bytes_in_unit(src_unit)) / bytes_in_unit(dst_unit)


def parse_memory_string(string: str) -> tuple[float, str]:
    """'1024 Mib' -> (1024.0, 'Mib'); a bare number is in bytes ('b')."""
    match = _SIZE.match(string)
    if not match:
        raise ValueError(f"Not a size: {string!r} (expected a number with an optional unit like 2G or 512Mi)")
    number, unit = match.groups()
    if not unit:
        return float(number), "b"
    _check_unit(unit)
    return float(number), unit


def human2bytes(string: str | int | float) -> int:
    """Parse '2G', '100M', '1.5Gi', '512' (bytes) or a number into a byte count ('1K' is 1000)."""
    if isinstance(string, bool):
        raise ValueError(f"Not a size: {string!r}")
    if isinstance(string, (int, float)):
        if string < 0:
            raise ValueError(f"Sizes cannot be negative: {string!r}")
        return int(string)
    try:
        value, unit = parse_memory_string(string)
    except RuntimeError as exc:
        raise ValueError(f"Unknown size unit in {string!r}: {exc}") from None
    return int(value * bytes_in_unit(unit))


def bytes2human(n: SupportsInt) -> str:
    """A byte count in Toil's format: binary units, one decimal ('1.0 Ki', '2.0 Gi', '512.0 b')."""
    n = int(n)
    if n < 0:
        raise ValueError("n < 0")
    if n < 1:
        return "0 b"
    units = ("b", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
    unit = units[min(math.floor(math.log(n, 1024)), len(units) - 1)]
    return f"{convert_units(n, 'b', unit):.1f} {unit}"


def b_to_mib(n: int | float) -> float:
    return convert_units(n, "b", "mib")


def mib_to_b(n: int | float) -> float:
    return convert_units(n, "mib", "b")


def hms_duration_to_seconds(hms: str) -> float:
    """'hh:mm:ss' as seconds."""
    fields = hms.split(":")
    if any(float(field) < 0 for field in fields):
        raise ValueError("Invalid Time, negative value")
    if len(fields) != 3:
        raise ValueError("Invalid amount of fields, function takes input in 'hh:mm:ss'")
    hours, minutes, seconds = (float(field) for field in fields)
    return hours * 3600 + minutes * 60 + seconds


def seconds_to_dhms(seconds: int) -> str:
    """Seconds as 'dd-hh:mm:ss'."""
    if seconds < 0:
        raise ValueError("Invalid Time, negative value")
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days:02}-{hours:02}:{minutes:02}:{secs:02}"


def strtobool(val: str) -> bool:
    """'y', '1', 'ON', 'TrUe', 'Yes'... -> True; 'n', '0', 'off', 'False'... -> False (by prefix, as Toil)."""
    lowered = val.lower()
    for result, prefixes in ((True, ("1", "on", "y", "t")), (False, ("0", "off", "n", "f"))):
        if lowered.startswith(prefixes):
            return result
    raise ValueError(f'Cannot convert "{val}" to a bool')


def opt_strtobool(b: str | None) -> bool | None:
    return None if b is None else strtobool(b)


def modify_url(url: str, remove: list[str]) -> str:
    """``url`` without the query parameters named in ``remove``."""
    scheme, netloc, path, query, fragment = urllib.parse.urlsplit(url)
    params = {key: value for key, value in urllib.parse.parse_qs(query).items() if key not in remove}
    return urllib.parse.urlunsplit((scheme, netloc, path, urllib.parse.urlencode(params, doseq=True), fragment))


def readable_size(n: int | float) -> str:
    """A byte count as people write it, for toilray's messages: '900 TB', '2 GiB', '77.3 GB', '512 B'.

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
