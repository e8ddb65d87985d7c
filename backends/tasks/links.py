"""Symbolic links a task's command left in its working directory, made usable as outputs.

A command that links an input (``ln -s ~{infile} out.txt``) leaves a link to a path inside the
container (which does not exist on the host), or, natively, to a file outside the working
directory; miniwdl rejects both as outputs. After the command, each such link is replaced by a
copy of what it points to, and a link into the working directory by one relative to it.
"""

from __future__ import annotations

import os
import shutil

from WDL.runtime.task_container import TaskContainer


def _host_target(container: TaskContainer, target: str) -> str | None:
    work = os.path.join(container.container_dir, "work")
    if target in container.input_path_map_rev:
        return container.input_path_map_rev[target].rstrip("/")
    for container_path, host_path in container.input_path_map_rev.items():
        prefix = container_path.rstrip("/") + "/"
        if target.startswith(prefix):
            return os.path.join(host_path.rstrip("/"), target[len(prefix):])
    if target == work or target.startswith(work + "/"):
        return os.path.join(container.host_work_dir(), os.path.relpath(target, work))
    return None


def resolve_output_links(container: TaskContainer) -> None:
    work = container.host_work_dir()
    inputs = os.path.join(work, "_miniwdl_inputs")
    for top, dirs, names in os.walk(work):
        if top == inputs or top.startswith(inputs + "/"):
            continue
        for name in [*dirs, *names]:
            path = os.path.join(top, name)
            if not os.path.islink(path):
                continue
            target = os.readlink(path)
            if not os.path.isabs(target):
                target = os.path.normpath(os.path.join(top, target))
            host = _host_target(container, target) or target
            real = os.path.realpath(host)
            if not os.path.exists(real):
                continue
            os.unlink(path)
            if real == work or real.startswith(work + "/"):
                os.symlink(os.path.relpath(real, top), path)
            elif os.path.isdir(real):
                shutil.copytree(real, path, symlinks=False)
            else:
                shutil.copy2(real, path)
