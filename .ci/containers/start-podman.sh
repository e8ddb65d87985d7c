#!/usr/bin/env bash
# A real container engine for the tests on a Debian 12 machine as root, without systemd and
# without a Docker daemon: podman with runc, and podman's Docker Engine API socket at
# unix:///run/toilray-containers/docker.sock (toilray.lib.container_engine looks there, so
# Docker SDK clients and cwltool's docker mode need no DOCKER_HOST). Idempotent: a socket that
# answers is reused; prints 'ready' when `podman run` works.
# Why each engine setting (each was needed on these machines; without it `podman run` fails):
#   runtime runc         crun refuses this machine's hybrid cgroup v1/v2 mounts
#   cgroup_manager       no systemd here
#   default_ulimits = [] the sandbox forbids raising RLIMIT_NOFILE / RLIMIT_NPROC
#   events_logger file   journald is not running without systemd
# PYTHON: an interpreter with toilray installed (the socket check is toilray's own).
set -euo pipefail
PYTHON=${PYTHON:-python3}
state=/run/toilray-containers
sock=$state/docker.sock
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
$SUDO mkdir -p "$state"
if ! command -v podman >/dev/null || ! [ -x /usr/sbin/runc ]; then
  echo "setup-tests: installing podman and runc" >&2
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q podman runc >/dev/null
fi
conf=/etc/containers/containers.conf
if ! grep -q 'toilray-containers' "$conf" 2>/dev/null; then
  $SUDO mkdir -p /etc/containers
  $SUDO tee "$conf" >/dev/null <<'CONF'
# written by toilray's .ci/containers/start-podman.sh (toilray-containers)
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi
answers() { "$PYTHON" -c "import sys; from toilray.lib.container_engine import socket_answers; \
sys.exit(0 if socket_answers('$sock') else 1)"; }
if ! answers; then
  # A test service: started here and left running for later runs (no systemd to own it).
  $SUDO rm -f "$sock"
  $SUDO setsid podman system service --time=0 "unix://$sock" >"$state/service.log" 2>&1 < /dev/null &
  echo $! | $SUDO tee "$state/service.pid" >/dev/null
  for _ in $(seq 100); do answers && break; sleep 0.1; done
  answers || { echo "setup-tests: podman's API socket does not answer (see $state/service.log)" >&2; exit 1; }
fi
# Smoke test on an image made from two host binaries (no registry needed).
if ! podman image exists localhost/toilray-smoke:1; then
  tmp=$(mktemp -d)
  mkdir -p "$tmp/bin"
  for b in /bin/sh /bin/echo; do cp "$b" "$tmp/bin/"; ldd "$b" | grep -o '/[^ ]*' | xargs -I{} cp --parents {} "$tmp"; done
  tar -C "$tmp" -c . | podman import - localhost/toilray-smoke:1 >/dev/null
  rm -rf "$tmp"
fi
out=$(podman run --rm --network none localhost/toilray-smoke:1 /bin/echo ok 2>&1)
[ "$out" = ok ] || { echo "setup-tests: podman run failed: $out" >&2; exit 1; }
echo ready
