"""Auto-deployment: the workflow's own code, shipped to the nodes of a running Ray cluster.

As Toil auto-deploys a user script, toilray ships the Python modules of the workflow's code root
(the directory of the script, or the root of the package hierarchy of a module run with
``python -m``): every ``.py`` file there and every package (a directory with ``__init__.py``).
They travel as Ray runtime_env ``py_modules``: uploaded once to the cluster's head, unpacked on
each node before its first worker of the run starts, and put on that worker's ``sys.path``.
Code that is installed (under the interpreter's prefix, as toilray itself and its front ends
are) is not shipped: it must be installed on every node.
"""

from __future__ import annotations

import json
import os
import sys

# What Ray's Jobs API hands a driver it starts: the submission's runtime_env among the rest.
_RAY_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def _installed(path: str) -> bool:
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    real = os.path.realpath(path)
    return any(real == prefix or real.startswith(prefix + os.sep) for prefix in prefixes)


def _shipped_by_submission() -> bool:
    """Whether this process is the driver of a Ray job whose submission brought code along
    (``toilray submit`` sends the script's directory as its working_dir, which every task of
    the job inherits)."""
    try:
        runtime_env = json.loads(os.environ.get(_RAY_JOB_CONFIG, "{}")).get("runtime_env") or {}
    except (ValueError, AttributeError):
        return False
    return bool(runtime_env.get("working_dir") or runtime_env.get("py_modules"))


def workflow_modules(code_root: str | None) -> list[str]:
    """The local paths to ship for a workflow whose code root is ``code_root`` (None: no script,
    as in an interactive session); none when that code is installed or already travels with the
    Ray job that runs this process."""
    if code_root is None or not os.path.isdir(code_root) or _installed(code_root) or _shipped_by_submission():
        return []
    return [os.path.join(code_root, name) for name in sorted(os.listdir(code_root))
            if _module_or_package(os.path.join(code_root, name))]


def _module_or_package(path: str) -> bool:
    stem, suffix = os.path.splitext(os.path.basename(path))
    if suffix == ".py":
        return stem.isidentifier() and os.path.isfile(path)
    return stem.isidentifier() and not suffix and os.path.isfile(os.path.join(path, "__init__.py"))
