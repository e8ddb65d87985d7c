#!/bin/sh
# The bash image's entrypoint, as docker.io/library/bash has it: arguments that start with an
# option (`-c '...'`) or name no command are given to bash; a command runs as it is.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ] || [ -z "$(command -v "$1")" ]; then
  set -- bash "$@"
fi
exec "$@"
