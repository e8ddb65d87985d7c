"""Job functions in a module beside the workflow script."""

from __future__ import annotations


def double(value: int) -> int:
    return value * 2
