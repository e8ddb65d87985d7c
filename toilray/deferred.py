"""``job.defer``: functions that run after a job attempt, however it ends.

Each attempt's registrations are kept in a node-local file (rewritten atomically on every
``defer``), so they survive the worker process being killed. The worker runs and removes
them when the attempt ends; files left by dead processes are picked up by the next job on
that node, and by the leader when the workflow ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import uuid
from collections.abc import Callable
from typing import Any

from toilray import serialize
from toilray.lib.processes import pid_alive

logger = logging.getLogger("toilray.worker")

_SUFFIX = ".deferred"


def _run_all(functions: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]) -> None:
    for function, args, kwargs in functions:
        try:
            function(*args, **kwargs)
        except Exception:
            logger.exception("Deferred function %s failed", getattr(function, "__name__", function))


class DeferredFunctions:
    """The deferred functions of one job attempt."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex}{_SUFFIX}")
        self._functions: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def register(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._functions.append((function, args, kwargs))
        data, _ = serialize.dumps(self._functions)
        os.makedirs(self._directory, exist_ok=True)
        tmp = f"{self._path}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, self._path)

    def run(self) -> None:
        """The attempt ended: run every registered function once, in order."""
        functions, self._functions = self._functions, []
        _run_all(functions)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)


def run_orphaned(directory: str, everything: bool = False) -> int:
    """Run deferred functions left by dead processes (all of them if ``everything``)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    ran = 0
    for name in names:
        if not name.endswith(_SUFFIX):
            continue
        pid = int(name.split("-", 1)[0])
        if not everything and pid_alive(pid):
            continue
        path = os.path.join(directory, name)
        claimed = f"{path}.claimed-{os.getpid()}"
        try:
            os.rename(path, claimed)  # only one process wins the claim
        except FileNotFoundError:
            continue
        try:
            with open(claimed, "rb") as handle:
                functions = pickle.load(handle)
        except Exception:
            logger.exception("Could not load deferred functions from %s", path)
        else:
            _run_all(functions)
            ran += len(functions)
        finally:
            os.unlink(claimed)
    return ran
