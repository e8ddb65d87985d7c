"""The docker back end: miniwdl's podman invocation, run by the ``docker`` command against a
Docker Engine API (a daemon, or podman's API socket, through ``DOCKER_HOST``).

miniwdl's own docker back end needs Docker swarm, which podman's API does not offer; the
``docker run`` options of toilray's podman back end (miniwdl's) mean the same to docker. The leader sets
``[podman] exe`` to the docker command for this back end.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from contextlib import ExitStack

from toilray.backends.tasks.podman import PodmanTaskContainer

PLUGIN_NAME = "toilray_docker"


class DockerCliContainer(PodmanTaskContainer):
    @property
    def cli_name(self) -> str:
        return "docker"

    def _run_invocation(self, logger: logging.Logger, cleanup: ExitStack, image: str) -> list[str]:
        invocation = super()._run_invocation(logger, cleanup, image)
        # `docker run --rm` against podman's Docker API (4.3) exits 0 whatever the command's exit
        # status: the container is named instead, and removed once it ended.
        name = f"toilray-wdl-{uuid.uuid4().hex}"
        invocation[invocation.index("--rm")] = f"--name={name}"
        cleanup.callback(lambda: subprocess.run([*self.cli_exe, "rm", "--force", name], capture_output=True,
                                                check=False))
        return invocation
