"""A script whose job function lives in a sibling module, not installed anywhere."""

from __future__ import annotations

from sibling_helpers import double

from toilray.common import Toil
from toilray.job import Job

if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    with Toil(options) as toil:
        print(f"RESULT {toil.start(Job.wrapFn(double, 21))}")
