"""toilray: Toil's workflow API on Ray.

Change ``toil`` to ``toilray`` in a Toil script's imports and it runs on Ray. From Python (a
notebook, a server): ``toilray.run(job, jobStore, **options)`` and ``toilray.start(...)``.
"""

import os
from typing import Any

from toilray.exceptions import DeadlockException, FailedJobsException

__version__ = "0.1.0"
__all__ = ["DeadlockException", "FailedJobsException", "Run", "RunStatus", "__version__", "physicalDisk",
           "physicalMemory", "run", "start"]

_RUNS = ("Run", "RunStatus", "run", "start")


def __getattr__(name: str) -> Any:
    # The engine loads only when a workflow is run from Python: `import toilray` stays light.
    if name in _RUNS:
        from toilray import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'toilray' has no attribute {name!r}")


def physicalMemory() -> int:
    """This machine's physical memory in bytes, as Toil's ``toil.physicalMemory``."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def physicalDisk(directory: str) -> int:
    """Bytes available to an unprivileged user on the file system holding ``directory``."""
    stats = os.statvfs(directory)
    return stats.f_frsize * stats.f_bavail
