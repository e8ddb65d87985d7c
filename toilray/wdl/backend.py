"""Where a WDL task's command runs: the one interface between the runner and its back ends.

A back end is a miniwdl TaskContainer (miniwdl's podman and singularity ones; toilray's
native and docker ones in ``toilray.backends.tasks``) plus the configuration that selects it.
The leader picks one per run (``choose``); workers get it as a ``TaskBackend`` value.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field

from toilray.exceptions import ToilrayError
from toilray.lib import container_engine

CHOICES = ("auto", "docker", "podman", "singularity", "none")


class TaskBackendUnavailable(ToilrayError):
    """The container engine asked for with --container is not on this machine."""


# Every container back end miniwdl would load (its own and toilray's), by module: a run
# loads only the one it uses (importing miniwdl's docker back end alone imports the Docker SDK).
_BACKEND_MODULES = (
    "WDL.runtime.backend.docker_swarm",
    "WDL.runtime.backend.singularity",
    "WDL.runtime.backend.podman",
    "WDL.runtime.backend.udocker",
    "toilray.backends.tasks.native",
    "toilray.backends.tasks.podman",
    "toilray.backends.tasks.docker",
)


@dataclass(frozen=True, slots=True)
class TaskBackend:
    """A back end as the worker needs it: miniwdl configuration overrides and environment."""

    name: str
    module: str
    overrides: dict[str, dict[str, str]]
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def uses_containers(self) -> bool:
        return self.name != "native"


def _backend(name: str, module: str, plugin: str, overrides: dict[str, dict[str, str]] | None = None,
             environment: dict[str, str] | None = None) -> TaskBackend:
    disabled = ["miniwdl_task_omnibus_example:*", *(f"{other}:*" for other in _BACKEND_MODULES if other != module)]
    settings = {"scheduler": {"container_backend": plugin}, "plugins": {"disable_patterns": json.dumps(disabled)},
                **(overrides or {})}
    return TaskBackend(name, module, settings, environment or {})


def _podman() -> TaskBackend:
    from toilray.backends.tasks.podman import PLUGIN_NAME

    # miniwdl's default is `sudo podman`.
    return _backend("podman", "toilray.backends.tasks.podman", PLUGIN_NAME, {"podman": {"exe": json.dumps(["podman"])}})


def _docker(host: str | None) -> TaskBackend:
    from toilray.backends.tasks.docker import PLUGIN_NAME

    return _backend("docker", "toilray.backends.tasks.docker", PLUGIN_NAME, {"podman": {"exe": json.dumps(["docker"])}},
                    {"DOCKER_HOST": host} if host else {})


def _singularity() -> TaskBackend:
    return _backend("singularity", "WDL.runtime.backend.singularity", "singularity")


def native() -> TaskBackend:
    from toilray.backends.tasks.native import PLUGIN_NAME

    return _backend("native", "toilray.backends.tasks.native", PLUGIN_NAME)


def choose(option: str) -> TaskBackend:
    """The back end for ``--container option``: ``auto`` takes podman's command line when
    present, else a Docker Engine API with the docker command, else runs natively."""
    if option == "none":
        return native()
    if option in ("auto", "podman") and container_engine.podman_command() is not None:
        return _podman()
    if option in ("auto", "docker"):
        host = container_engine.docker_host()
        if host is not None and shutil.which("docker") is not None:
            return _docker(host)
    if option == "singularity":
        if shutil.which("singularity") is None and shutil.which("apptainer") is None:
            raise TaskBackendUnavailable("--container singularity: neither singularity nor apptainer is on PATH")
        return _singularity()
    if option == "auto":
        return native()
    raise TaskBackendUnavailable(f"--container {option}: no {option} found on this machine")
