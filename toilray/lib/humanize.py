"""Toil's deprecated ``toil.lib.humanize``: ``toilray.lib.conversions``' sizes, with Toil's warning."""

from __future__ import annotations

import logging
from typing import SupportsInt

from toilray.lib import conversions

logger = logging.getLogger(__name__)


def bytes2human(n: SupportsInt) -> str:
    logger.warning('Deprecated toil method.  Please use "toil.lib.conversions.bytes2human()" instead.')
    return conversions.bytes2human(n)


def human2bytes(s: str) -> int:
    logger.warning('Deprecated toil method.  Please use "toil.lib.conversions.human2bytes()" instead.')
    return conversions.human2bytes(s)
