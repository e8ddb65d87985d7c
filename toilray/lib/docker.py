"""Toil's ``toil.lib.docker``: run a job's tool in a container through the Docker SDK.

``apiDockerCall`` has Toil's signature and defaults: the job's working directory (the
directory a job runs in, as Toil's ``os.getcwd()``) is mounted at ``/data``, a list of lists
of ``parameters`` is a shell pipeline, and the container is killed and removed when the job
attempt ends (``deferParam``: RM by default; STOP stops it, FORGO leaves it) through ``job.defer``, whose
registrations outlive a killed worker (``toilray.deferred``). The defer is registered before
the container is created, so no container of a job is ever without one. Every container
carries labels naming the job store and the job, so that it can be found by a person or a
cleanup (``podman ps -a --filter label=toilray.jobStore=STORE``), and has the job's cores and
memory as its limits (Toil sets none), unless the caller passes its own.

``dockerCall`` and ``dockerCheckOutput`` are Toil's older calls, which took ``docker run``
options; current Toil only raises for them, toilray runs them on the same SDK.

The engine is the one ``toilray.lib.container_engine`` chooses (``$DOCKER_HOST``, else a
Docker-API socket that answers). Podman serves that API with a few differences this module
absorbs: see ``_run_and_collect`` for ``auto_remove``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from typing import IO, Any

import docker
import docker.errors
import docker.types
import requests

from toilray.exceptions import BadOptionError, ContainerEngineError, ContainerImageNotFoundError
from toilray.lib import container_engine

logger = logging.getLogger(__name__)

FORGO = 0
STOP = 1
RM = 2

_YEAR_S = 365 * 24 * 60 * 60

# The labels every container started here carries.
JOB_STORE_LABEL = "toilray.jobStore"
JOB_LABEL = "toilray.job"


def client(timeout: int = _YEAR_S) -> docker.DockerClient:
    """A Docker SDK client for the engine ``container_engine`` chooses."""
    host = container_engine.docker_host()
    if host is None:
        tried = ", ".join(container_engine.KNOWN_SOCKETS)
        podman = container_engine.podman_command()
        hint = (f"; podman is installed ({podman}): serve its API with "
                "'podman system service --time=0 unix:///run/podman/podman.sock'") if podman else ""
        raise ContainerEngineError(f"No container engine answers: DOCKER_HOST is not set and none of {tried} "
                                   f"serves the Docker Engine API{hint}")
    try:
        return docker.DockerClient(base_url=host, version="auto", timeout=timeout)
    except docker.errors.DockerException as error:
        chosen = " (DOCKER_HOST)" if os.environ.get("DOCKER_HOST") else ""
        raise ContainerEngineError(f"The container engine at {host}{chosen} does not answer: {error}") from None


def getContainerName(job: Any) -> str:
    """A fresh container name naming the job (Toil's form: ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``)."""
    parts = ["toilray", str(getattr(job, "jobName", "job")), base64.b64encode(os.urandom(9), b"-_").decode()]
    return re.sub("[^a-zA-Z0-9_.-]", "", "--".join(parts))


def _labels(job: Any) -> dict[str, str]:
    return {JOB_LABEL: str(job.jobStoreID), JOB_STORE_LABEL: job.fileStore.jobStore.locator}


def _limits(job: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The job's cores and memory as the container's limits, unless the caller set them."""
    limits: dict[str, Any] = {}
    if "nano_cpus" not in options and "cpu_quota" not in options:
        limits["nano_cpus"] = int(job.cores * 1e9)
    if "mem_limit" not in options:
        limits["mem_limit"] = int(job.memory)
    return limits


def _command(parameters: list[str] | list[list[str]], entrypoint: str | list[str] | None
             ) -> tuple[str | list[str] | None, str | list[str] | None]:
    """(command, entrypoint) for Toil's ``parameters``: a list of lists is a bash pipeline."""
    if parameters and isinstance(parameters[0], list):
        chain = " | ".join(" ".join(shlex.quote(arg) for arg in command) for command in parameters)
        return [f"set -eo pipefail && {chain}"], entrypoint if entrypoint is not None else ["/bin/bash", "-c"]
    if parameters:
        return " ".join(shlex.quote(str(arg)) for arg in parameters), entrypoint
    return None, None


def _image_missing(image: str, why: str = "") -> ContainerImageNotFoundError:
    reason = f": {why}" if why else ""
    return ContainerImageNotFoundError(
        f"The container image '{image}' is not on the container engine at {container_engine.docker_host()} "
        f"and could not be pulled{reason}")


def _create(engine: docker.DockerClient, image: str, **options: Any) -> Any:
    """Create a container, pulling its image first when the engine lacks it."""
    try:
        return engine.containers.create(image, **options)
    except docker.errors.ImageNotFound:
        try:
            engine.images.pull(image)
        except docker.errors.APIError as error:
            raise _image_missing(image, str(error.explanation or error)) from None
        try:
            return engine.containers.create(image, **options)
        except docker.errors.ImageNotFound:
            raise _image_missing(image) from None


def _start(engine: docker.DockerClient, image: str, **options: Any) -> Any:
    container = _create(engine, image, **options)
    container.start()
    return container


def _start_attached(engine: docker.DockerClient, image: str, stdout: bool, stderr: bool, demux: bool,
                    **options: Any) -> tuple[Any, Iterator[Any]]:
    """Start a container and stream its output, attached before it starts as ``docker run``
    is: the stream ends when the container does (following its log instead can miss the end
    of a container that exits at once, on podman)."""
    container = _create(engine, image, **options)
    output = engine.api.attach(container.id, stdout=stdout, stderr=stderr, stream=True, logs=False, demux=demux)
    container.start()
    return container, iter(output)


def _defer_cleanup(job: Any, name: str, action: int | None, remove: bool) -> None:
    """Toil's end-of-job action on a container: RM (the default) kills and removes it, STOP
    stops it, FORGO leaves it; ``remove`` removes it as well. Registered before the container
    exists, so that even a killed worker's container is cleaned up."""
    if action == STOP:
        job.defer(dockerStop, name)
    if action in (None, RM) or remove:
        job.defer(dockerKill, name, remove=True)


def _run_and_collect(engine: docker.DockerClient, image: str, command: Any, stdout: bool, stderr: bool,
                     stream: bool, demux: bool, remove: bool, **options: Any) -> Any:
    """Run to completion as ``containers.run(detach=False)`` does; raise ContainerError on a
    non-zero exit. ``auto_remove`` is done here after the wait, because podman's API then
    reports every exit status as 0 ("container has already been removed")."""
    remove_after = remove or bool(options.pop("auto_remove", False))
    if stream:
        return _start_attached(engine, image, stdout, stderr, demux, command=command, **options)[1]
    container = _start(engine, image, command=command, **options)
    try:
        status = container.wait()["StatusCode"]
        if demux:
            out: Any = (container.logs(stdout=True, stderr=False) if stdout else None,
                        container.logs(stdout=False, stderr=True) if stderr else None)
        else:
            out = container.logs(stdout=stdout, stderr=stderr)
        if status != 0:
            raise docker.errors.ContainerError(container, status, command, image,
                                               container.logs(stdout=False, stderr=True))
        return out
    finally:
        if remove_after:
            container.remove(force=True)


def apiDockerCall(
    job: Any,
    image: str,
    parameters: list[str] | list[list[str]] | None = None,
    deferParam: int | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
    working_dir: str | None = None,
    containerName: str | None = None,
    entrypoint: str | list[str] | None = None,
    detach: bool = False,
    log_config: dict[str, str] | None = None,
    auto_remove: bool | None = None,
    remove: bool = False,
    user: str | None = None,
    environment: dict[str, str] | None = None,
    stdout: bool | None = None,
    stderr: bool = False,
    stream: bool = False,
    demux: bool = False,
    streamfile: str | None = None,
    accelerators: list[int] | None = None,
    timeout: int = _YEAR_S,
    **kwargs: Any,
) -> Any:
    """Run ``image`` with ``parameters`` for ``job``; Toil's ``apiDockerCall``.

    Returns the output (bytes; a ``(stdout, stderr)`` tuple with ``demux``; a generator with
    ``stream``) when ``detach`` is False, else the SDK's Container (after copying its output
    to ``streamfile``, default ``output.log``, when ``stdout`` or ``stderr`` is asked for).
    ``working_dir`` (default: the job's working directory) is mounted at ``/data``, which is
    the container's working directory, unless ``volumes`` says otherwise.
    """
    if deferParam not in (None, FORGO, STOP, RM):
        raise BadOptionError(f"apiDockerCall: deferParam must be FORGO, STOP or RM, not {deferParam!r}")
    host_dir = os.path.abspath(working_dir if working_dir is not None else os.getcwd())
    if volumes is None:
        volumes = {host_dir: {"bind": "/data", "mode": "rw"}}
        container_dir = "/data"
    else:
        container_dir = working_dir if working_dir is not None else "/data"
    for path in volumes:
        os.makedirs(path, exist_ok=True)
    command, entrypoint = _command(parameters or [], entrypoint)
    name = containerName if containerName is not None else getContainerName(job)
    if user is None:
        user = f"{os.getuid()}:{os.getgid()}"
    engine = client(timeout)
    _defer_cleanup(job, name, deferParam, remove)
    options: dict[str, Any] = dict(
        entrypoint=entrypoint, working_dir=container_dir, name=name, volumes=volumes, user=user,
        environment=environment, labels={**_labels(job), **kwargs.pop("labels", {})}, **_limits(job, kwargs),
        **kwargs)
    if log_config is not None:
        options["log_config"] = docker.types.LogConfig(**log_config)
    if accelerators:
        options["device_requests"] = [docker.types.DeviceRequest(
            device_ids=[",".join(str(number) for number in accelerators)], capabilities=[["gpu"]])]
    logger.debug("Calling docker with %r", command)
    try:
        if not detach:
            return _run_and_collect(engine, image, command, stdout is None or stdout, stderr, stream, demux,
                                    remove, auto_remove=remove if auto_remove is None else auto_remove, **options)
        if not (stdout or stderr):
            return _start(engine, image, command=command, auto_remove=bool(auto_remove), **options)
        container, output = _start_attached(engine, image, bool(stdout), stderr, False, command=command,
                                            auto_remove=bool(auto_remove), **options)
        with open(streamfile or "output.log", "wb") as handle:
            for chunk in output:
                handle.write(chunk)
        return container
    except requests.exceptions.ConnectionError as error:
        raise ContainerEngineError(f"Lost the container engine at {container_engine.docker_host()}: {error}") from None


def dockerKill(container_name: str, gentleKill: bool = False, remove: bool = False, timeout: int = _YEAR_S) -> None:
    """Kill (or, with ``gentleKill``, stop: SIGTERM, then SIGKILL) a container, then remove it
    if asked; nothing happens for a container that does not exist."""
    engine = client(timeout)
    try:
        container = engine.containers.get(container_name)
        if container.status == "running":
            try:
                if gentleKill:
                    container.stop()
                else:
                    container.kill()
            except docker.errors.APIError:
                # It may have ended meanwhile (Docker answers 409 then, podman 500).
                container.reload()
                if container.status == "running":
                    raise
        if remove:
            container.remove(force=True)
    except docker.errors.NotFound:
        logger.debug("Container %s is gone already", container_name)


def dockerStop(container_name: str, remove: bool = False) -> None:
    """Stop a container gracefully (SIGTERM, then SIGKILL), then remove it if asked."""
    dockerKill(container_name, gentleKill=True, remove=remove)


def containerIsRunning(container_name: str, timeout: int = _YEAR_S) -> bool | None:
    """True when the container runs, False when it exists but does not, None when it does not exist."""
    try:
        return bool(client(timeout).containers.get(container_name).status == "running")
    except docker.errors.NotFound:
        return None


_DOCKER_OPTIONS_WITH_VALUE = {
    "-v": "volume", "--volume": "volume", "--name": "name", "-e": "env", "--env": "env", "-w": "working_dir",
    "--workdir": "working_dir", "--entrypoint": "entrypoint", "-u": "user", "--user": "user",
    "--log-driver": "log_driver", "--net": "network", "--network": "network",
}
_DOCKER_FLAGS = {"--rm": "remove", "-i": None, "-t": None, "--interactive": None, "--tty": None,
                 "--init": "init", "--privileged": "privileged"}


def _parse_docker_parameters(arguments: list[str]) -> dict[str, Any]:
    """The SDK options for a list of ``docker run`` options, as old ``dockerCall`` took them."""
    options: dict[str, Any] = {"volumes": {}, "environment": {}}
    words = iter(arguments)
    for word in words:
        flag, _, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if flag in _DOCKER_FLAGS and not value:
            if _DOCKER_FLAGS[flag]:
                options[str(_DOCKER_FLAGS[flag])] = True
            continue
        key = _DOCKER_OPTIONS_WITH_VALUE.get(flag)
        if key is None:
            raise BadOptionError(f"dockerCall: the docker option '{word}' is not supported (supported: "
                                 f"{', '.join(sorted({*_DOCKER_OPTIONS_WITH_VALUE, *_DOCKER_FLAGS}))})")
        if not value:
            value = next(words, "")
        if key == "volume":
            source, _, rest = value.partition(":")
            target, _, mode = rest.partition(":")
            options["volumes"][os.path.abspath(source)] = {"bind": target, "mode": mode or "rw"}
        elif key == "env":
            variable, _, setting = value.partition("=")
            options["environment"][variable] = setting if _ else os.environ.get(variable, "")
        elif key == "log_driver":
            # The SDK reads a container's output through its log, so a driver that keeps
            # none ('none', which old dockerCall passed by default) is left out.
            if value != "none":
                options["log_config"] = docker.types.LogConfig(type=value)
        else:
            options[key] = value
    return options


def _docker(job: Any, tool: str, parameters: list[str] | list[list[str]] | None, workDir: str | None,
            dockerParameters: list[str] | None, outfile: IO[bytes] | None, defer: int | None) -> bytes:
    if defer not in (None, FORGO, STOP, RM):
        raise BadOptionError(f"dockerCall: defer must be FORGO, STOP or RM, not {defer!r}")
    work_dir = os.path.abspath(workDir if workDir is not None else os.getcwd())
    if dockerParameters is None:
        dockerParameters = ["--rm", "-v", f"{work_dir}:/data"]
    options = _parse_docker_parameters(dockerParameters)
    remove = bool(options.pop("remove", False))
    name = options.pop("name", None) or getContainerName(job)
    command, entrypoint = _command(parameters or [], options.pop("entrypoint", None))
    if isinstance(command, str):
        command = shlex.split(command)
    engine = client()
    _defer_cleanup(job, name, defer, remove)
    call = ["docker", "run", *dockerParameters, tool, *(command or [])]
    logger.info("Calling docker with %r", call)
    container, output_stream = _start_attached(
        engine, tool, True, False, False, command=command, entrypoint=entrypoint, name=name, labels=_labels(job),
        **_limits(job, options), **options)
    try:
        output = b""
        for chunk in output_stream:
            if outfile is not None:
                outfile.write(chunk)
            else:
                output += chunk
        status = container.wait()["StatusCode"]
        if status != 0:
            raise subprocess.CalledProcessError(status, call, output, container.logs(stdout=False, stderr=True))
        return output
    finally:
        if remove:
            container.remove(force=True)


def dockerCall(job: Any, tool: str, parameters: list[str] | list[list[str]] | None = None,
               workDir: str | None = None, dockerParameters: list[str] | None = None,
               outfile: IO[bytes] | None = None, defer: int | None = None) -> None:
    """Run ``tool`` (an image) with ``parameters``, ``workDir`` mounted at ``/data``; Toil's
    old ``dockerCall``: ``dockerParameters`` replace the default ``--rm -v WORKDIR:/data``,
    stdout goes to ``outfile`` (a binary file) when given; a non-zero exit raises
    ``subprocess.CalledProcessError``."""
    _docker(job, tool, parameters, workDir, dockerParameters, outfile, defer)


def dockerCheckOutput(job: Any, tool: str, parameters: list[str] | list[list[str]] | None = None,
                      workDir: str | None = None, dockerParameters: list[str] | None = None,
                      defer: int | None = None) -> str:
    """As ``dockerCall``, returning the container's stdout as text (Python 2's
    ``check_output`` returned a str, which is what the pipelines that call this expect)."""
    return _docker(job, tool, parameters, workDir, dockerParameters, None, defer).decode()


def subprocessDockerCall(*args: Any, **kwargs: Any) -> None:
    """Removed in Toil, as here: it ran the docker command line, which this module never needs."""
    raise ContainerEngineError("subprocessDockerCall() has been removed, please switch to apiDockerCall()")
