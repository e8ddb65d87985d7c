"""The leader of a CWL run of the WES server: ``toilray-cwl-runner`` with its output object in a file.

``python -m toilray.server.cwl_leader OUTPUTS.json RUNNER-ARGS...``: the runner prints the output
object on stdout; here that goes to ``OUTPUTS.json.part``, renamed to ``OUTPUTS.json`` when the
run succeeded, and then ``OUTPUTS.json.done`` marks it whole (what a restarted server checks for
a run that ended while it was down).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    from toilray.cwl.main import quick_exit, reported_main

    target = sys.argv[1]
    partial = target + ".part"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, sys.stdout.fileno())
    os.close(descriptor)
    argv = sys.argv[2:]
    sys.argv = ["toilray-cwl-runner", *argv]
    try:
        code = reported_main(argv)
    except SystemExit as exc:
        # argparse's answer to a bad option.
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if code == 0:
        sys.stdout.flush()
        os.replace(partial, target)
        with open(target + ".done", "w", encoding="ascii"):
            pass
    quick_exit(code)


if __name__ == "__main__":
    main()
