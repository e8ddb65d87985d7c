"""The first run of the day against Ray's own start (issue 17: "≤ Ray's own start + 1.5 s").

Each round, alternating, on a machine where no toilray-managed Ray runs:

- *toilray, first run*: ``workflows/fanout.py --jobs 100`` with a fresh ``TOILRAY_HOME``, so
  that the run starts the managed local Ray (and its workers' fork server) as a new user's
  first run does; end to end, as the shell sees it. Then ``toilray local-ray stop``.
- *toilray, second run*: the same workflow again on that Ray, before it is stopped.
- *Ray's own start*: ``ray.init()`` of a new local Ray in a fresh process, until it returns
  (no task run, no shutdown counted), as a plain Ray script pays it.

Printed: one line per measurement, then the medians.

    .venv/bin/python benchmarks/first_run.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE / "workflows"

RAY_START = """
import time, ray
started = time.perf_counter()
ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
print(time.perf_counter() - started)
"""


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def _round(scratch: Path, index: int) -> tuple[float, float, float]:
    home = scratch / f"home-{index}"
    env = {**os.environ, "TOILRAY_HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    fanout = [sys.executable, str(WORKFLOWS / "fanout.py"), "--jobs", "100", "--clean", "always",
              "--logLevel", "WARNING"]
    try:
        first = _timed([*fanout, f"file:{scratch / f'store-{index}-a'}"], env, scratch)
        second = _timed([*fanout, f"file:{scratch / f'store-{index}-b'}"], env, scratch)
    finally:
        subprocess.run([sys.executable, "-m", "toilray", "local-ray", "stop"], env=env, capture_output=True,
                       check=False)
    plain = subprocess.run([sys.executable, "-c", RAY_START], env=env, capture_output=True, text=True,
                           check=True)
    return first, second, float(plain.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="toilray-first-run-") as scratch:
        for index in range(options.rounds):
            first, second, ray_start = _round(Path(scratch), index)
            rows.append((first, second, ray_start))
            print(f"round {index + 1}: toilray first run {first:.2f} s, second run {second:.2f} s, "
                  f"Ray's own start {ray_start:.2f} s (first run - Ray's start: {first - ray_start:.2f} s)",
                  flush=True)
    first, second, ray_start = (statistics.median(column) for column in zip(*rows, strict=True))
    # Also per round: the machine's speed drifts between rounds more than the two differ within one.
    paired = statistics.median(row[0] - row[2] for row in rows)
    print(f"medians of {len(rows)}: first run {first:.2f} s, second run {second:.2f} s, Ray's own start "
          f"{ray_start:.2f} s; first run - Ray's start: {first - ray_start:.2f} s, median of the rounds' "
          f"differences {paired:.2f} s (target <= 1.5 s)")


if __name__ == "__main__":
    main()
