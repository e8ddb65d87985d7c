"""Toil's ``toil.batchSystems.registry``: batch systems by name.

toilray runs every job on Ray, so ``--batchSystem`` takes ``ray`` or ``single_machine``, and
``slurm``, ``grid_engine`` or ``lsf`` for Ray worker nodes that are scheduler jobs
(``toilray.elastic``); other names of Toil's get a one-line answer saying what to do instead
(``toilray.options``). A plugin
registered here can be looked up by name, but jobs still run on Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from toilray.batchSystems.abstractBatchSystem import AbstractBatchSystem

DEFAULT_BATCH_SYSTEM = "single_machine"

_factories: dict[str, Callable[[], type[AbstractBatchSystem]]] = {}


def add_batch_system_factory(key: str, class_factory: Callable[[], type[AbstractBatchSystem]]) -> None:
    """Register a batch system class by name: ``class_factory()`` returns the class (not an instance)."""
    _factories[key] = class_factory


def get_batch_systems() -> Sequence[str]:
    """The names of the batch systems known, in the order they were registered."""
    return list(_factories)


def get_batch_system(key: str) -> type[AbstractBatchSystem]:
    """The class registered under ``key``; KeyError for a name not registered."""
    return _factories[key]()


def _single_machine() -> type[AbstractBatchSystem]:
    from toilray.batchSystems.singleMachine import SingleMachineBatchSystem

    return SingleMachineBatchSystem


add_batch_system_factory("single_machine", _single_machine)
