"""Toil's deprecated ``toil.lib.bioio`` helpers (cactus still imports them), each with Toil's warning."""

from __future__ import annotations

import logging
import os
import secrets
import string
import subprocess
import tempfile
from argparse import Namespace
from typing import Any

from toilray.statsAndLogging import logger, root_logger, set_logging_from_options


def system(command: str | list[str]) -> None:
    """Run ``command`` (a string through the shell, or an argument list); CalledProcessError if it fails."""
    logger.warning("Deprecated toil method that will be moved/replaced in a future release.")
    logger.debug("Running: %s", command)
    subprocess.check_call(command, shell=isinstance(command, str), bufsize=-1)


def getLogLevelString(logger: logging.Logger | None = None) -> str:
    """The name of ``logger``'s (default: the root logger's) effective level, such as 'INFO'."""
    root_logger.warning('Deprecated toil method.  Please call "logging.getLevelName" directly.')
    return logging.getLevelName((logger or root_logger).getEffectiveLevel())


def setLoggingFromOptions(options: Namespace | Any) -> None:
    logger.warning('Deprecated toil method.  Please use "toil.statsAndLogging.set_logging_from_options()" instead.')
    set_logging_from_options(options)


def getTempFile(suffix: str = "", rootDir: str | None = None) -> str:
    """A new empty file's path (in ``rootDir``, readable by everyone, when given); the caller deletes it."""
    logger.warning('Deprecated toil method.  Please use "toil.test.get_temp_file()" instead.')
    if rootDir is None:
        handle, path = tempfile.mkstemp(suffix)
        os.close(handle)
        return path
    name = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(10))
    path = os.path.join(rootDir, f"tmp_{name}{suffix}")
    open(path, "w").close()
    os.chmod(path, 0o777)
    return path
