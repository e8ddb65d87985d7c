"""Job functions in a module of the package (not in __main__)."""

from __future__ import annotations


def shout(text: str) -> str:
    return text.upper()
