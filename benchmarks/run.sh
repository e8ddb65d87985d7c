#!/usr/bin/env bash
# Run every benchmark and write benchmarks/RESULTS.md. Arguments go to run.py (try --help).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
export BENCH_LAUNCHER="benchmarks/run.sh"
exec "$python" "$here/run.py" "$@"
