"""Test workflow: a job that logs live, then waits for the test to say it saw the message."""

from __future__ import annotations

import os
import time

from toilray.common import Toil
from toilray.job import Job
from toilray.realtimeLogger import RealtimeLogger


def talker(go_file: str) -> str:
    RealtimeLogger.info("live message from the running job")
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file):
        if time.monotonic() > deadline:
            raise RuntimeError("the leader never showed the live message")
        time.sleep(0.05)
    return "heard"


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--goFile", required=True)
    options = parser.parse_args()
    with Toil(options) as toil:
        print(f"RESULT {toil.start(Job.wrapFn(talker, options.goFile))}")
