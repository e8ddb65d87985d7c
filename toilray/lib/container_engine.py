"""Which container engine this machine offers: the one home of that rule.

Two parts of toilray run containers — the CWL runner (through cwltool) and
``toilray.lib.docker`` (through the Docker SDK) — and both ask here, so that they agree.
A Docker Engine API socket is preferred, because both Docker and podman (``podman system
service``) serve it and every Docker client speaks it; the podman command line is the fallback.
"""

from __future__ import annotations

import os
import shutil
import socket

# Where a Docker Engine API is usually served when DOCKER_HOST is not set: Docker's own
# daemon, the socket toilray's test set-up starts for podman, and rootful podman's default.
KNOWN_SOCKETS = (
    "/var/run/docker.sock",
    "/run/toilray-containers/docker.sock",
    "/run/podman/podman.sock",
)

_PING_TIMEOUT_S = 2.0


def socket_answers(path: str) -> bool:
    """True when a Docker Engine API on the unix socket at *path* answers ``GET /_ping``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(_PING_TIMEOUT_S)
            conn.connect(path)
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
            reply = conn.recv(4096)
    except OSError:
        return False
    return reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0]


def docker_host() -> str | None:
    """The Docker Engine API URL for clients: ``$DOCKER_HOST`` as given when set (the user
    chose it), else the first of KNOWN_SOCKETS that answers, else None."""
    chosen = os.environ.get("DOCKER_HOST")
    if chosen:
        return chosen
    for path in KNOWN_SOCKETS:
        if os.path.exists(path) and socket_answers(path):
            return f"unix://{path}"
    return None


def podman_command() -> str | None:
    """The podman executable on PATH, for when no Docker Engine API answers."""
    return shutil.which("podman")
