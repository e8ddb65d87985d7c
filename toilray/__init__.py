"""toilray: Toil's workflow API on Ray.

Change ``toil`` to ``toilray`` in a Toil script's imports and it runs on Ray.
"""

from toilray.exceptions import DeadlockException, FailedJobsException

__version__ = "0.1.0"
__all__ = ["DeadlockException", "FailedJobsException", "__version__"]
