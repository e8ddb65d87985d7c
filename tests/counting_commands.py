"""Counting wrappers for a scheduler's commands: scripts of the same names, put first on PATH,
that log each call and run the real command (for the elastic HPC test and benchmark)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path


def counting_wrappers(directory: Path, log: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Write the wrappers of ``names`` into ``directory`` (created), logging to ``log``; the real
    commands' paths, by name."""
    directory.mkdir()
    real = {}
    for name in names:
        found = shutil.which(name)
        if found is None:
            raise FileNotFoundError(f"{name} is not on PATH")
        real[name] = found
        wrapper = directory / name
        wrapper.write_text(f'#!/bin/bash\necho "{name} $*" >> {log}\nexec {found} "$@"\n')
        wrapper.chmod(0o755)
    return real


def calls(log: Path) -> Counter[str]:
    """How many times each wrapped command ran."""
    if not log.exists():
        return Counter()
    return Counter(line.split()[0] for line in log.read_text().splitlines() if line.strip())
