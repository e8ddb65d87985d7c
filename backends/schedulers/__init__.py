"""The HPC schedulers behind ``toilray.hpc.Scheduler``: Slurm, Grid Engine and LSF."""

from __future__ import annotations

from toilray.hpc import Scheduler


def all_schedulers() -> list[Scheduler]:
    from toilray.backends.schedulers.gridengine import GridEngine
    from toilray.backends.schedulers.lsf import LSF
    from toilray.backends.schedulers.slurm import Slurm

    return [Slurm(), GridEngine(), LSF()]
