"""The podman back end: miniwdl's, with the links a command left made usable as outputs
(see ``links``). miniwdl's ``[podman] exe`` is ``podman_exe`` (no pull of an image that is here)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from toilray.backends.tasks.links import resolve_output_links
from WDL.runtime.backend.podman import PodmanContainer

PLUGIN_NAME = "toilray_podman"


class PodmanTaskContainer(PodmanContainer):
    def _run(self, logger: logging.Logger, terminating: Callable[[], bool], command: str) -> int:
        exit_code = super()._run(logger, terminating, command)
        resolve_output_links(self)
        return exit_code
