"""Test workflow: a job sends RealtimeLogger messages at INFO and DEBUG; a handler on the
leader's root logger collects what arrives, printed as JSON (level and text as sent)."""

from __future__ import annotations

import json
import logging

from toilray.common import Toil
from toilray.job import Job
from toilray.realtimeLogger import RealtimeLogger


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[list[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append([record.levelname, record.getMessage()])


def talk() -> None:
    RealtimeLogger.info("realtime info: 50% done")
    RealtimeLogger.debug("realtime debug: the details")
    RealtimeLogger.warning("realtime warning: %s", "with an argument")


if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    options.realTimeLogging = True
    collected = Collected()
    with Toil(options) as toil:
        logging.getLogger().addHandler(collected)
        toil.start(Job.wrapFn(talk, cores=0.1))
    print(json.dumps([m for m in collected.messages if m[1].startswith("realtime")]))
