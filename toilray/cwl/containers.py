"""Which container engine a CWL tool's DockerRequirement runs in, and toilray's changes to
cwltool's container jobs.

The leader picks the engine once (``choose_engine``) from what ``toilray.lib.container_engine``
finds: cwltool's docker mode, with ``DOCKER_HOST`` set for the ``docker`` command it runs, when
a Docker Engine API answers; else cwltool's podman mode. An engine the user named
(``--podman``, ``--singularity``, ``--user-space-docker-cmd``) or ``--no-container`` is left
as given.

Workers build tools with ``make_tool``, whose CommandLineTool differs from cwltool's: the node
cache that input directories link into is mounted too (read-only); docker mode removes the
container itself (see ToilrayDockerJob); podman run as root works (cwltool always asks for
``--userns=keep-id``, which podman allows only rootless); and an image that cannot be found or
pulled fails the tool with one line naming the image and the engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from argparse import Namespace
from typing import Any

from cwltool.command_line_tool import CommandLineTool
from cwltool.context import LoadingContext, RuntimeContext
from cwltool.docker import DockerCommandLineJob, PodmanCommandLineJob
from cwltool.errors import WorkflowException
from cwltool.job import JobBase
from cwltool.workflow import default_make_tool

from toilray.exceptions import ContainerImageNotFoundError
from toilray.lib import container_engine


def missing_image(error: WorkflowException) -> ContainerImageNotFoundError | None:
    """The ContainerImageNotFoundError that cwltool wrapped in ``error`` (it reraises whatever finding the
    image raised as a general "Docker is required" error), if that is what it holds."""
    cause = error.__cause__
    return cause if isinstance(cause, ContainerImageNotFoundError) else None


def choose_engine(args: Namespace) -> str | None:
    """Set cwltool's engine options in ``args`` for this machine; the ``DOCKER_HOST`` that
    workers give the ``docker`` command, or None when docker mode is not the choice (or
    cwltool's own default, the ``docker`` command as it finds it, is all there is)."""
    if not args.use_container or args.podman or args.singularity or args.user_space_docker_cmd:
        return None
    host = container_engine.docker_host()
    if host is not None and shutil.which("docker") is not None:
        return host
    if container_engine.podman_command() is not None:
        args.podman = True
    return None


def _find_image(job: DockerCommandLineJob, engine: str, requirement: dict[str, str], pull_image: bool,
                force_pull: bool, tmp_outdir_prefix: str) -> bool:
    """cwltool's get_image, failing with one line when the image is not there."""
    image = requirement.get("dockerPull") or requirement.get("dockerImageId") or "?"
    try:
        found = DockerCommandLineJob.get_image(job, requirement, pull_image, force_pull, tmp_outdir_prefix)
    except subprocess.CalledProcessError:
        found = False
    if not found:
        raise ContainerImageNotFoundError(
            f"Container image {image} not found by {engine}: not on this node, and pulling it failed")
    return found


class ToolRuntimeContext(RuntimeContext):
    """cwltool's RuntimeContext, plus the directories outside a tool's input trees that links
    in those trees point into (the node cache): a container sees them read-only, at the same
    paths, so that the links resolve inside it too."""

    link_targets: tuple[str, ...] = ()


def _with_link_targets(runtime: tuple[list[str], str | None],
                       runtimeContext: RuntimeContext) -> tuple[list[str], str | None]:
    command, cidfile = runtime
    if isinstance(runtimeContext, ToolRuntimeContext):
        # Before the image name, which cwltool appends after create_runtime.
        command += [f"--mount=type=bind,source={path},target={path},readonly" for path in runtimeContext.link_targets]
    return command, cidfile


class ToilrayDockerJob(DockerCommandLineJob):
    """cwltool's docker-mode job, failing on a missing image with one line, and removing the
    container itself: ``docker run --rm`` against podman's Docker API (4.3) exits 0 whatever
    the tool's exit status, so the container is named instead and removed once it ended."""

    container_name: str | None = None

    def create_runtime(self, env: Any, runtimeContext: RuntimeContext) -> tuple[list[str], str | None]:
        command, cidfile = _with_link_targets(super().create_runtime(env, runtimeContext), runtimeContext)
        if "--rm" in command:
            self.container_name = f"toilray-cwl-{uuid.uuid4().hex}"
            command[command.index("--rm")] = f"--name={self.container_name}"
        return command, cidfile

    def run(self, runtimeContext: RuntimeContext, tmpdir_lock: threading.Lock | None = None) -> None:
        try:
            super().run(runtimeContext, tmpdir_lock)
        finally:
            if self.container_name is not None:
                subprocess.run([self.docker_exec, "rm", "--force", self.container_name], capture_output=True,
                               check=False)

    def get_image(self, docker_requirement: dict[str, str], pull_image: bool, force_pull: bool,
                  tmp_outdir_prefix: str) -> bool:
        engine = f"docker ({os.environ.get('DOCKER_HOST') or 'its default daemon'})"
        return _find_image(self, engine, docker_requirement, pull_image, force_pull, tmp_outdir_prefix)


class ToilrayPodmanJob(PodmanCommandLineJob):
    """cwltool's podman-mode job, failing on a missing image with one line, and runnable as root:
    ``--userns=keep-id`` keeps a rootless user's own uid inside the container, and as root
    (which podman refuses it for) the uid is 0 on both sides anyway."""

    def get_image(self, docker_requirement: dict[str, str], pull_image: bool, force_pull: bool,
                  tmp_outdir_prefix: str) -> bool:
        return _find_image(self, "podman", docker_requirement, pull_image, force_pull, tmp_outdir_prefix)

    def create_runtime(self, env: Any, runtimeContext: RuntimeContext) -> tuple[list[str], str | None]:
        if os.geteuid() == 0:
            # cwltool adds the flag when the context says podman; the command stays self.docker_exec.
            runtimeContext = runtimeContext.copy()
            runtimeContext.podman = False
        return _with_link_targets(super().create_runtime(env, runtimeContext), runtimeContext)


class ToilrayCommandLineTool(CommandLineTool):
    """cwltool's CommandLineTool with toilray's container jobs."""

    def make_job_runner(self, runtimeContext: RuntimeContext) -> type[JobBase]:
        runner = super().make_job_runner(runtimeContext)
        if runner is PodmanCommandLineJob:
            return ToilrayPodmanJob
        if runner is DockerCommandLineJob:
            return ToilrayDockerJob
        return runner


def make_tool(toolpath_object: Any, loadingContext: LoadingContext) -> Any:
    """cwltool's default_make_tool, with ToilrayCommandLineTool for CommandLineTools."""
    if toolpath_object.get("class") == "CommandLineTool":
        return ToilrayCommandLineTool(toolpath_object, loadingContext)
    return default_make_tool(toolpath_object, loadingContext)
