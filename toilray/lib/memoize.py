"""Toil's ``toil.lib.memoize``: caching decorators and the small parsers that live beside them."""

from __future__ import annotations

import datetime
import functools
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

# Results by arguments, kept for ever. Two threads may both call the function for the same new
# arguments; ``sync_memoize`` calls it once.
memoize = functools.lru_cache(maxsize=None)

R = TypeVar("R")

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")


def sync_memoize(f: Callable[..., R]) -> Callable[..., R]:
    """Like ``memoize`` (positional arguments only), but ``f`` runs once per arguments even when
    several threads ask at once."""
    memory: dict[tuple[Any, ...], R] = {}
    lock = threading.Lock()

    @functools.wraps(f)
    def memoized(*args: Any) -> R:
        try:
            return memory[args]
        except KeyError:
            with lock:
                if args not in memory:
                    memory[args] = f(*args)
                return memory[args]

    return memoized


def parse_iso_utc(s: str) -> datetime.datetime:
    """An RFC 3339 time in UTC ('2016-04-27T00:28:04.000Z') as a timezone-aware datetime;
    ValueError for another format or time zone."""
    match = _RFC3339.match(s)
    if not match:
        raise ValueError(f"Not a valid ISO datetime in UTC: {s}")
    zone = match.group(8)
    if zone != "Z" and not zone.endswith("00:00"):
        raise ValueError(f"Not in the UTC time zone: {s}")
    text = s[:-1] + "+00:00" if zone == "Z" else s
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S" + (".%f" if match.group(7) else "") + "%z")


def strict_bool(s: str) -> bool:
    """'True' or 'False', exactly; ValueError for anything else."""
    if s in ("True", "False"):
        return s == "True"
    raise ValueError(s)
