"""Where toilray keeps its state on this machine, and a stamp of the code that is installed.

Long-lived toilray processes (the managed local Ray, the fork servers) record the stamp of the
code they run, so that a process started after an upgrade or an edit never hands work to them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from importlib.metadata import version

PACKAGE = os.path.dirname(os.path.abspath(__file__))


def state_dir() -> str:
    """toilray's directory on this machine, ``$TOILRAY_HOME`` (default ``~/.toilray``): the local
    Ray's records (``toilray.local_ray``) and what toilray keeps between runs."""
    return os.environ.get("TOILRAY_HOME") or os.path.join(os.path.expanduser("~"), ".toilray")



def code_stamp() -> str:
    """A digest of the code a long-lived toilray process runs: toilray's source files (path,
    size and modification time: no file is read), Ray's version and the interpreter."""
    # Normalised (not resolved: each venv's interpreter is a link to the same file): an interpreter
    # started as .venv/../.venv/bin/python is the same interpreter.
    digest = hashlib.sha256(f"{version('ray')}\0{os.path.abspath(sys.executable)}\0".encode())
    for directory, subdirectories, files in os.walk(PACKAGE):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                info = os.stat(path)
                digest.update(f"{os.path.relpath(path, PACKAGE)}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]
