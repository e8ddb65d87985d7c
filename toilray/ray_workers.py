"""The managed local Ray's Python workers, started as forks of a process that is warm already.

A Ray worker process imports Ray before it registers, then toilray's worker and the job's code
at its first task (cwltool for a CWL tool, miniwdl for a WDL task): most of a second of CPU
before any work. Ray starts every run's workers afresh (workers belong to one Ray job, one
leader), so a CWL run of one tool paid that again for each run. The managed local Ray
(``toilray.local_ray``) starts its Python processes through a *launcher*, a small shell script
in the state directory, instead of the interpreter itself: a worker's command goes to a fork
server (``toilray.forkserver``) that has imported all that once, and a fork of it runs Ray's
worker with the command's arguments, environment, directory and standard streams, in a process
group of its own as Ray starts workers. Each worker is still a process of its own: nothing of
one run's modules, environment or directory reaches another's. Ray's other processes (its
agents) start through the launcher unchanged; a worker waits for the server to warm up (the
first workers start it), or runs in its own process where none can take it.

Ray takes the launcher as its interpreter because it starts workers with the interpreter it
runs on (``sys.executable``), which ``forked_workers`` sets for the call that starts Ray.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import runpy
import shlex
import signal
import sys
from collections.abc import Iterator

from toilray import forkserver
from toilray.installation import state_dir

# What a fork server does to a worker whose launcher is gone: Ray kills workers outright.
SIGNAL_WHEN_COMMAND_GONE = signal.SIGKILL
# Ray ends a dead worker's process group, what the worker left running with it: the group must be the worker's.
OWN_PROCESS_GROUP = True
# Ray's first workers start with it, together: they wait for the server one of them starts.
WAIT_FOR_SERVER = True


def _default_worker() -> str:
    import ray._private.workers

    return os.path.join(os.path.dirname(os.path.abspath(ray._private.workers.__file__)), "default_worker.py")


def launcher() -> str | None:
    """The launcher for this interpreter (written if missing), or None where workers are not to be forked."""
    if not forkserver.enabled() or not sys.platform.startswith("linux"):
        return None
    python = shlex.quote(os.path.abspath(sys.executable))
    text = (f"#!/bin/sh\n# Written by toilray (toilray.ray_workers): Ray's interpreter on the managed local Ray.\n"
            f"if [ \"$1\" = {shlex.quote(_default_worker())} ]; then\n"
            f"  exec {python} -c 'from toilray.ray_workers import main; main()' \"$@\"\nfi\n"
            f"exec {python} \"$@\"\n")
    path = os.path.join(state_dir(), f"ray-python-{hashlib.sha256(text.encode()).hexdigest()[:16]}")
    if not os.path.exists(path):
        os.makedirs(state_dir(), exist_ok=True)
        partial = f"{path}.{os.getpid()}"
        with open(partial, "w") as handle:
            handle.write(text)
        os.chmod(partial, 0o755)
        os.replace(partial, path)
    return path


@contextlib.contextmanager
def forked_workers() -> Iterator[None]:
    """Around a call that starts a Ray node in this process (``ray.init``): its Python workers start
    as forks of a warm process. Only for that call, as the interpreter names code elsewhere (the code stamp)."""
    interpreter = sys.executable
    sys.executable = launcher() or interpreter
    try:
        yield
    finally:
        sys.executable = interpreter


def main() -> None:
    """The launcher's worker command: ``python -c ... default_worker.py ARGS``."""
    sys.argv = sys.argv[1:]
    # As the interpreter sets it for a script: the worker's own directory, not the launcher's.
    sys.path[0] = os.path.dirname(sys.argv[0])
    forkserver.run_forked(__name__)
    run()


def preload() -> None:
    """What a worker imports before its first task and at it, done ahead in a fork server."""
    for module in ("ray._private.workers.default_worker", "toilray.worker", "toilray.cwl.tooljob",
                   "toilray.wdl.taskjob"):
        importlib.import_module(module)


def run() -> None:
    runpy.run_path(sys.argv[0], run_name="__main__")
