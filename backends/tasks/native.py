"""The native back end: a WDL task's command runs on the worker itself, in a scratch directory.

miniwdl runs every task in a container whose paths start with ``/mnt/miniwdl_task_container``;
here the "container" directory is the task's own host directory, so the paths the command sees
are real host paths, and each input is linked where miniwdl would have mounted it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
from collections.abc import Callable

from toilray.backends.tasks.links import resolve_output_links
from WDL.runtime import config
from WDL.runtime.error import Terminated
from WDL.runtime.task_container import TaskContainer

# The name miniwdl's configuration selects this back end by (an entry point in pyproject.toml).
PLUGIN_NAME = "toilray_native"


class NativeContainer(TaskContainer):
    """A TaskContainer without a container: bash runs the command in the host work directory."""

    @classmethod
    def global_init(cls, cfg: config.Loader, logger: logging.Logger) -> None:
        pass

    @classmethod
    def detect_resource_limits(cls, cfg: config.Loader, logger: logging.Logger) -> dict[str, int]:
        # toilray's leader already gave the job the cores and memory it asked for.
        return {"cpu": os.cpu_count() or 1, "mem_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}

    def __init__(self, cfg: config.Loader, run_id: str, host_dir: str) -> None:
        super().__init__(cfg, run_id, host_dir)
        self.container_dir = host_dir

    def _link_inputs(self) -> None:
        for host_path, container_path in self.input_path_map.items():
            link = self.host_work_path(container_path.rstrip("/"))
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(os.path.realpath(host_path.rstrip("/")), link)

    def _run(self, logger: logging.Logger, terminating: Callable[[], bool], command: str) -> int:
        self._link_inputs()
        script = os.path.join(self.host_dir, "command")
        with open(script, "w") as out:
            for key, value in self.runtime_values.get("env", {}).items():
                out.write(f"export {key}={shlex.quote(value)}\n")
            out.write(command)
        shell = self.cfg.get("task_runtime", "command_shell")
        with open(self.host_stdout_txt(), "ab") as stdout, open(self.host_stderr_txt(), "ab") as stderr, \
                self.poll_stderr_context(logger) as poll_stderr, self.task_running_context():
            proc = subprocess.Popen([*shlex.split(shell), script], cwd=self.host_work_dir(), stdout=stdout,
                                    stderr=stderr, stdin=subprocess.DEVNULL)
            exit_code = None
            while exit_code is None:
                if terminating():
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    exit_code = proc.wait(1)
                poll_stderr()
        if terminating():
            raise Terminated()
        resolve_output_links(self)
        return exit_code
