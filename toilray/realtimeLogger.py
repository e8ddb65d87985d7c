"""``RealtimeLogger``: log from inside jobs to the workflow's log."""

from __future__ import annotations

import logging
from typing import Any


class RealtimeLogger:
    """Class-level logging methods, as in Toil: ``RealtimeLogger.info("...")``."""

    _logger = logging.getLogger("toilray.worker.realtime")

    @classmethod
    def getLogger(cls) -> logging.Logger:
        return cls._logger

    @classmethod
    def debug(cls, msg: str, *args: Any) -> None:
        cls._logger.debug(msg, *args)

    @classmethod
    def info(cls, msg: str, *args: Any) -> None:
        cls._logger.info(msg, *args)

    @classmethod
    def warning(cls, msg: str, *args: Any) -> None:
        cls._logger.warning(msg, *args)

    @classmethod
    def error(cls, msg: str, *args: Any) -> None:
        cls._logger.error(msg, *args)

    @classmethod
    def critical(cls, msg: str, *args: Any) -> None:
        cls._logger.critical(msg, *args)
