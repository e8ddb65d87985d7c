"""How job bodies and return values are pickled, and how promises inside them resolve.

Two rules shape this module:

* Functions and classes defined at the top level of the workflow script (``__main__``) are
  pickled *by reference* to the script's importable module name, not by value. A worker
  imports the script to find them, so ``--restart`` after editing the script runs the edited
  code, as Toil promises. Lambdas and nested functions still travel by value through
  cloudpickle.
* When ``__main__`` is not importable (a Jupyter kernel, ``python -c``), the functions and
  classes it defines travel by value *and* by name. The leader captures the current definition
  of each of them when a run starts (:func:`capture_main_definitions`) and ships those with the
  run; a job body names what it uses and carries the definition it was made with as a fallback.
  A worker uses the run's definition, so a ``--restart`` from a kernel whose cells redefined a
  function runs the new code for the jobs that had not finished, as a script's restart does;
  in the kernel itself the name resolves to the kernel's own object (``isinstance`` holds for
  returned values).
* A ``Promise`` pickles as a call to a resolver (``toilray.job``) that asks
  :func:`active_context` for the value. Unpickling a job body inside a
  :class:`PromiseContext` therefore replaces every promise, however deeply nested, by the
  value it stands for; a value that itself holds promises resolves the same way, so
  resolution is transitive. The pickler records which jobs the promises point at, which the
  leader needs to hand the right return values to a job.
"""

from __future__ import annotations

import importlib
import io
import logging
import pickle
import sys
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle

logger = logging.getLogger("toilray")

_local = threading.local()
_main_module_name: str | None = None
_in_leader = False
# The run's definitions of an unimportable __main__'s functions and classes, by name (by value).
_main_definitions: dict[str, bytes] = {}
# What each definition (the run's or a fallback) unpickled to in this process, by its bytes.
_resolved: dict[bytes, Any] = {}


def set_main_module_name(name: str | None, is_leader: bool) -> None:
    """Declare under which importable name the workflow script's ``__main__`` is known.

    In the leader process (where the script *is* ``__main__``) the name is also aliased to
    ``__main__`` so that unpickling a reference to it does not import and run it again.
    """
    global _main_module_name, _in_leader
    _main_module_name = name
    _in_leader = is_leader
    if is_leader and name and name not in sys.modules and "__main__" in sys.modules:
        sys.modules[name] = sys.modules["__main__"]


def main_module_name() -> str | None:
    return _main_module_name


def capture_main_definitions() -> dict[str, bytes]:
    """The top-level functions and classes of an unimportable ``__main__`` (a notebook's cells),
    each pickled by value; empty when ``__main__`` is a script's file.

    A definition that cannot be pickled (one that refers to a lock or an open file, say) is left
    out: a job using it fails to pickle on its own, with cloudpickle's message.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__file__", None):
        return {}
    captured = {}
    for name, value in list(vars(main).items()):
        if (isinstance(value, (types.FunctionType, type)) and getattr(value, "__module__", None) == "__main__"
                and value.__qualname__ == name):
            try:
                captured[name] = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                logger.debug("%s of __main__ cannot be pickled: %s", name, exc)
    return captured


def set_main_definitions(definitions: Mapping[str, bytes]) -> None:
    """The run's definitions of ``__main__``'s functions and classes (see the module's notes)."""
    _main_definitions.clear()
    _main_definitions.update(definitions)
    _resolved.clear()


def main_definitions() -> dict[str, bytes]:
    return dict(_main_definitions)


def main_definition(qualname: str, fallback: bytes) -> Any:
    """Unpickling helper: the function or class ``qualname`` of an unimportable ``__main__``."""
    if _in_leader:
        try:
            return _lookup(sys.modules["__main__"], qualname)
        except AttributeError:
            pass
    data = _main_definitions.get(qualname, fallback)
    found = _resolved.get(data)
    if found is None:
        found = _resolved[data] = pickle.loads(data)
    return found


def _names_main_definition(obj: Any) -> bool:
    """Whether ``obj`` travels by name as one of the run's ``__main__`` definitions.

    In the leader it must be the kernel's current object (an older one kept in a variable
    travels by value only). In a worker every copy with that name came from the run's
    definitions (a function's globals hold copies of the functions it calls), so the name is
    enough: a job created there runs the run's definition, and after a restart the new one.
    """
    if obj.__qualname__ not in _main_definitions:
        return False
    if not _in_leader:
        return True
    try:
        return _lookup(sys.modules["__main__"], obj.__qualname__) is obj
    except AttributeError:
        return False


def _lookup(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def import_attribute(module: str, qualname: str) -> Any:
    """Unpickling helper: the object named ``qualname`` in ``module``."""
    return _lookup(importlib.import_module(module), qualname)


class _Pickler(cloudpickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if not (isinstance(obj, (types.FunctionType, type)) and getattr(obj, "__module__", None) == "__main__"
                and "<" not in obj.__qualname__):
            return super().reducer_override(obj)
        if _main_module_name:
            try:
                found = _lookup(sys.modules["__main__"], obj.__qualname__)
            except AttributeError:
                found = None
            if found is obj:
                return import_attribute, (_main_module_name, obj.__qualname__)
        elif _names_main_definition(obj):
            return main_definition, (obj.__qualname__, cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        return super().reducer_override(obj)


def dumps(obj: Any) -> tuple[bytes, frozenset[str]]:
    """Pickle ``obj``; also return the IDs of the jobs whose promises it contains."""
    data, promisers = dumps_with_promisers(obj)
    return data, frozenset(promisers)


def dumps_with_promisers(obj: Any) -> tuple[bytes, dict[str, Any]]:
    """Pickle ``obj``; also return, by job ID, what made each promise it contains (the job or
    service object, None when unknown), so that a promise error can name it."""
    seen: dict[str, Any] = {}
    outer = getattr(_local, "promises_seen", None)
    _local.promises_seen = seen
    try:
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    finally:
        _local.promises_seen = outer
    return buffer.getvalue(), seen


def note_promise(job_id: str, promiser: Any = None) -> None:
    """Called by ``Promise.__reduce__``: the object being pickled depends on ``job_id``."""
    seen = getattr(_local, "promises_seen", None)
    if seen is not None and seen.get(job_id) is None:
        seen[job_id] = promiser


def loads(data: bytes) -> Any:
    return pickle.loads(data)


class PromiseContext:
    """The return values that promises may resolve to while a job body is unpickled.

    ``raw`` holds pickled return values by job ID, as handed to the task; ``fetch`` reads a
    value from the job store when it is not there (after a restart the in-memory copy of a
    value committed by an earlier leader is gone).
    """

    def __init__(self, raw: Mapping[str, bytes], fetch: Callable[[str], bytes]) -> None:
        self._raw = raw
        self._fetch = fetch
        self._values: dict[str, Any] = {}

    def resolve(self, job_id: str, path: Sequence[Any]) -> Any:
        """The value a promise of ``job_id`` stands for, with ``path`` applied."""
        value = self.value_of(job_id)
        for step in path:
            value = value[step]
        return value

    def value_of(self, job_id: str) -> Any:
        if job_id not in self._values:
            data = self._raw.get(job_id)
            if data is None:
                data = self._fetch(job_id)
            self._values[job_id] = self.loads(data)
        return self._values[job_id]

    def loads(self, data: bytes) -> Any:
        """Unpickle with this context active, resolving promises."""
        outer = getattr(_local, "context", None)
        _local.context = self
        try:
            return loads(data)
        finally:
            _local.context = outer


def active_context() -> PromiseContext | None:
    """The context unpickling is resolving promises in on this thread, if any."""
    return getattr(_local, "context", None)
