"""Toil's ``toil.batchSystems.singleMachine``: ``--batchSystem single_machine``, which in toilray
is an embedded Ray sized to this machine, and the machine's size as Toil's class reports it."""

from __future__ import annotations

from typing import Any

import toilray
from toilray.batchSystems.abstractBatchSystem import AbstractBatchSystem, UpdatedBatchJobInfo
from toilray.lib.threading import cpu_count


class SingleMachineBatchSystem(AbstractBatchSystem):
    """This machine: ``numCores`` CPUs, ``physicalMemory`` bytes. toilray runs jobs as Ray
    tasks, never through this class, so its job methods say so."""

    numCores = cpu_count()
    # The smallest share of a core that a job can ask for.
    minCores = 0.1
    physicalMemory = toilray.physicalMemory()

    def _refuse(self) -> Any:
        raise NotImplementedError("toilray runs every job as a Ray task; --batchSystem single_machine "
                                  "means an embedded Ray on this machine")

    def issueBatchJob(self, command: str, job_desc: Any, job_environment: dict[str, str] | None = None) -> int:
        return self._refuse()

    def killBatchJobs(self, jobIDs: list[int]) -> None:
        self._refuse()

    def getIssuedBatchJobIDs(self) -> list[int]:
        return self._refuse()

    def getRunningBatchJobIDs(self) -> dict[int, float]:
        return self._refuse()

    def getUpdatedBatchJob(self, maxWait: int) -> UpdatedBatchJobInfo | None:
        return self._refuse()

    def shutdown(self) -> None:
        """Nothing to stop: no jobs ever ran through it."""
