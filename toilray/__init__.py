"""toilray: Toil's workflow API on Ray.

Change ``toil`` to ``toilray`` in a Toil script's imports and it runs on Ray.
"""

import os

from toilray.exceptions import DeadlockException, FailedJobsException

__version__ = "0.1.0"
__all__ = ["DeadlockException", "FailedJobsException", "__version__", "physicalDisk", "physicalMemory"]


def physicalMemory() -> int:
    """This machine's physical memory in bytes, as Toil's ``toil.physicalMemory``."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def physicalDisk(directory: str) -> int:
    """Bytes available to an unprivileged user on the file system holding ``directory``."""
    stats = os.statvfs(directory)
    return stats.f_frsize * stats.f_bavail
