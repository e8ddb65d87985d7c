#!/usr/bin/env bash
# Container images for the tests, built from Debian's packages (no image registry is reachable
# from CI). A Debian 12 minbase root file system with bash, coreutils and python3 (also as
# `python`) (debootstrap, ~1 min, ~260 MB), imported into podman as
# localhost/toilray-test/debian:bookworm and tagged with the names the CWL and WDL suites and
# tests/test_docker_calls.py pull. These are STAND-INS: same name, a Debian 12 userland inside;
# tests that depend on what is special about an image (apk in alpine, bash 4.4 exactly) can differ.
# bash:4.4 also gets the real image's ENTRYPOINT (run bash when the first argument is an option
# or not a command), which CWL's docker_entrypoint test relies on.
# Cached: the root file system in $CACHE (default /var/cache/toilray-images), the images in
# podman; a second run only re-tags (seconds).
#   EXTRA="pkg1 pkg2" build-test-images.sh   add Debian packages to the root file system
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CACHE:-/var/cache/toilray-images}
base=localhost/toilray-test/debian:bookworm
names="docker.io/library/debian:stable-slim docker.io/library/python:3-slim
docker.io/library/alpine:latest docker.io/library/ubuntu:22.04 docker.io/library/ubuntu:20.04
docker.io/library/ubuntu:18.04 docker.io/library/ubuntu:24.04"
bash_image=docker.io/library/bash:4.4
if ! podman image exists "$base"; then
  if ! command -v debootstrap >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  fi
  # the Debian mirror this machine's apt already uses
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  root="$cache/bookworm"
  if ! [ -x "$root/usr/bin/python3" ]; then
    rm -rf "$root"; mkdir -p "$cache"
    pkgs=python3,python-is-python3${EXTRA:+,${EXTRA// /,}}
    echo "setup-tests: building the test image's root file system (debootstrap, about a minute)" >&2
    debootstrap --variant=minbase --include="$pkgs" bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1
  fi
  tar -C "$root" -c . | podman import - "$base" >/dev/null
fi
for n in $names; do podman tag "$base" "$n"; done
entrypoint=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$bash_image" 2>/dev/null || true)
if [[ "$entrypoint" != *docker-entrypoint.sh* ]]; then
  cid=$(podman create "$base" true)
  podman cp "$here/bash-entrypoint.sh" "$cid:/usr/local/bin/docker-entrypoint.sh"
  podman commit -q --change 'ENTRYPOINT ["docker-entrypoint.sh"]' --change 'CMD ["bash"]' "$cid" "$bash_image" >/dev/null
  podman rm "$cid" >/dev/null
fi
podman run --rm --network none "$bash_image" -c 'echo images ready'
