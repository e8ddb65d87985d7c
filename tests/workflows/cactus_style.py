"""Test workflow in cactus's style: Toil's options added to a plain ArgumentParser, changed
in the script after parsing, passed to the jobs; RealtimeLogger messages from the jobs.

The script overrides what the command line says (the test passes ``--logLevel=CRITICAL
--retryCount 0 --defaultMemory 1G``): log level DEBUG, three tries, a default memory given as
a string, real-time logging on, the store deleted at the end, an autoscaling option that
toilray has no use for, and an attribute of its own that the jobs read. A handler on the
root logger collects what reaches the leader; the script prints it with the results as JSON.
"""

from __future__ import annotations

import json
import logging
import os
from argparse import ArgumentParser, Namespace
from typing import Any

from toilray.common import Toil
from toilray.job import Job
from toilray.realtimeLogger import RealtimeLogger


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[list[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "toilray":
            self.messages.append([record.levelname, record.getMessage()])


class AlignJob(Job):
    """A job that, as cactus's jobs do, keeps the whole options object."""

    def __init__(self, options: Namespace) -> None:
        super().__init__(cores=0.1)
        self.options = options

    def run(self, fileStore: Any) -> dict[str, Any]:
        RealtimeLogger.info(f"aligning with {self.options.myThing}")
        RealtimeLogger.debug("alignment details at debug level")
        # Fails until its third attempt: the options' retryCount 2, not the command line's 0.
        marks = self.options.attemptDir
        attempt = len(os.listdir(marks)) + 1
        open(os.path.join(marks, str(attempt)), "w").close()
        if attempt < 3:
            raise RuntimeError(f"attempt {attempt} fails on purpose")
        return {"memory": self.memory, "myThing": self.options.myThing, "attempt": attempt}


if __name__ == "__main__":
    parser = ArgumentParser()
    Job.Runner.addToilOptions(parser)
    parser.add_argument("--attemptDir", required=True)
    options = parser.parse_args()
    options.logLevel = "DEBUG"
    options.retryCount = 2
    options.defaultMemory = "300M"
    options.realTimeLogging = True
    options.clean = "always"
    options.targetTime = 1
    options.myThing = "my seed file"
    collected = Collected()
    with Toil(options) as toil:
        logging.getLogger().addHandler(collected)
        result = toil.start(AlignJob(options))
    print(json.dumps({"result": result, "messages": collected.messages}))
