"""toilray: Toil's workflow API on Ray.

Change ``toil`` to ``toilray`` in a Toil script's imports and it runs on Ray.
"""

from toilray.local_ray import prepare_client_environment

# Before anything imports Ray: its clients read the authentication mode once, at import.
prepare_client_environment()

from toilray.exceptions import DeadlockException, FailedJobsException  # noqa: E402

__version__ = "0.1.0"
__all__ = ["DeadlockException", "FailedJobsException", "__version__"]
