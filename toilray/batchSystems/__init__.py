"""Toil's ``toil.batchSystems``: the names scripts import. Every toilray job runs as a Ray task,
so the only batch systems are ``ray`` and ``single_machine`` (an embedded Ray on this machine)."""

from toilray.exceptions import DeadlockException

__all__ = ["DeadlockException"]
