"""The podman back end: miniwdl's, with the links a command left made usable as outputs
(see ``links``), and fewer podman calls per task.

miniwdl runs ``podman --version`` once per process and ``podman pull`` before every task's
first ``run``; a fresh worker per run paid both each time, and ``pull`` asks the registry even
for an image that is here (failing where none is reachable). ``podman run`` (and ``docker run``)
pull an image that is missing themselves (``--pull=missing``, their default), so neither call
is made; a podman that does not work fails the task's ``run`` with podman's own message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack

from toilray.backends.tasks.links import resolve_output_links
from WDL.Error import RuntimeError as WDLRuntimeError
from WDL.runtime import config
from WDL.runtime.backend.podman import PodmanContainer

PLUGIN_NAME = "toilray_podman"
# The exit status `podman run` and `docker run` give when they, not the command, failed.
_ENGINE_FAILED = 125


class PodmanTaskContainer(PodmanContainer):
    @classmethod
    def global_init(cls, cfg: config.Loader, logger: logging.Logger) -> None:
        # The leader chose this back end because the command is here (see PodmanContainer's).
        pass

    def _pull_invocation(self, logger: logging.Logger, cleanup: ExitStack) -> tuple[str, list[str]]:
        image, _ = super()._pull_invocation(logger, cleanup)
        return image, []

    def _run_invocation(self, logger: logging.Logger, cleanup: ExitStack, image: str) -> list[str]:
        invocation = super()._run_invocation(logger, cleanup, image)
        # The host's network, as a task has natively and under Singularity (Toil's back end):
        # a network of its own costs podman a fifth of a second or more per task.
        invocation.insert(invocation.index("run") + 1, "--network=host")
        return invocation

    def _run(self, logger: logging.Logger, terminating: Callable[[], bool], command: str) -> int:
        exit_code = super()._run(logger, terminating, command)
        if exit_code == _ENGINE_FAILED:
            problem = _last_line(self.host_cli_log_txt(self.cli_name))
            if problem:
                # podman's (or docker's) own failure, such as an image that is neither here nor
                # pullable: the task's stderr is empty, the reason is in the command's log.
                raise WDLRuntimeError(f"{self.cli_name} could not run the task: {problem}")
        resolve_output_links(self)
        return exit_code


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as stream:
            lines = [line.strip() for line in stream if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
