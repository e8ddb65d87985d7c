"""Small process helpers."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO


def pid_alive(pid: int) -> bool:
    """Whether a process with this ID exists on this machine (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def environment_set(values: dict[str, str]) -> Iterator[None]:
    """These environment variables set while the block runs, the previous ones back after it."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def results_stream() -> IO[str]:
    """The real stdout, for a runner's results JSON; stdout itself now goes to stderr.

    Ray and the libraries a runner drives print on stdout; this keeps their lines out of the
    JSON a caller parses.
    """
    sys.stdout.flush()
    output = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return output
