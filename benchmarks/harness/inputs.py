"""Input files the workflows read, generated deterministically on first use."""

from __future__ import annotations

import hashlib
import os
import random
import string
from pathlib import Path

_BLOCK = 1 << 20


def random_file(path: Path, size: int) -> Path:
    """``size`` bytes of random data (one random MiB repeated), reused if already there."""
    if path.exists() and path.stat().st_size == size:
        return path
    block = random.Random(size).randbytes(_BLOCK)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        remaining = size
        while remaining > 0:
            chunk = block[: min(remaining, _BLOCK)]
            out.write(chunk)
            remaining -= len(chunk)
    os.replace(tmp, path)
    return path


def lines_to_sort(path: Path, lines: int, length: int) -> str:
    """Write ``lines`` random lowercase lines of ``length`` characters; return the SHA-256 the
    correctly sorted file has."""
    rng = random.Random(lines * 1000 + length)
    rows = ["".join(rng.choices(string.ascii_lowercase, k=length)) + "\n" for _ in range(lines)]
    path.write_text("".join(rows))
    rows.sort()
    return hashlib.sha256("".join(rows).encode()).hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
