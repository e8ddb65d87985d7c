"""Toil's ``toil.statsAndLogging`` logging helpers for scripts: the log options on a parser of
their own, and the root logger set from the parsed options.

Log levels are parsed by ``toilray.options`` (``parse_log_level``), as for every toilray run.
"""

from __future__ import annotations

import logging
import logging.handlers
from argparse import ArgumentParser, Namespace
from typing import Any

from toilray.options import add_log_level_options, parse_log_level

logger = logging.getLogger(__name__)
root_logger = logging.getLogger()
toil_logger = logging.getLogger("toilray")

DEFAULT_LOGLEVEL = logging.INFO

_FORMAT = "[%(asctime)s] [%(threadName)-10s] [%(levelname).1s] [%(name)s] %(message)s"
# Log files already given a handler: setting up logging twice must not log every line twice.
_log_files: set[str] = set()


def add_logging_options(parser: ArgumentParser, default_level: int | None = None) -> None:
    """Add --logLevel (and --logDebug, --logInfo, ...), --logFile and --rotatingLogging."""
    level = logging.getLevelName(DEFAULT_LOGLEVEL if default_level is None else default_level)
    add_log_level_options(parser.add_argument_group("Logging Options"), parse_log_level(level))


def set_log_level(level: str, set_logger: logging.Logger | None = None) -> None:
    """Set the root logger (or ``set_logger``) to a level named as --logLevel takes it ('OFF' too)."""
    (set_logger or root_logger).setLevel(parse_log_level(level))


def configure_root_logger() -> None:
    """Give the root logger Toil's line format and level INFO, unless it has handlers already."""
    logging.basicConfig(format=_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z")
    root_logger.setLevel(DEFAULT_LOGLEVEL)


def log_to_file(log_file: str | None, log_rotation: bool) -> None:
    if log_file and log_file not in _log_files:
        _log_files.add(log_file)
        handler: logging.Handler
        if log_rotation:
            handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=1000000, backupCount=1)
        else:
            handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root_logger.addHandler(handler)


def set_logging_from_options(options: Namespace | Any) -> None:
    """Set up the root logger from parsed options: --logLevel, --logFile, --rotatingLogging.

    ``options.logLevel`` is filled in with the root logger's level when it is unset, as Toil does.
    """
    configure_root_logger()
    options.logLevel = getattr(options, "logLevel", None) or logging.getLevelName(root_logger.getEffectiveLevel())
    set_log_level(options.logLevel)
    # Toil's own parser calls it logRotating; toilray's (Toil's flag) rotatingLogging.
    rotating = getattr(options, "rotatingLogging", None) or getattr(options, "logRotating", False)
    log_to_file(getattr(options, "logFile", None), bool(rotating))
