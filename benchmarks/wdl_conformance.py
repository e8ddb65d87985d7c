"""The WDL conformance suite run by toilray-wdl-runner and by miniwdl (its podman back end),
with the same harness (tests/wdl_conformance.py): passes per version and summed time.

    .venv/bin/python benchmarks/wdl_conformance.py [--jobs 4] [--engines toilray,toilray-native,miniwdl] [--limit N]

The engines' cases alternate in one queue of ``--jobs`` at a time, so that both meet the same
load (on a shared machine it varies by the minute). Each engine's result is also merged into
benchmarks/wdl-conformance.json (the "WDL conformance" section of RESULTS.md shows it).

miniwdl runs with MINIWDL__SCHEDULER__CONTAINER_BACKEND=podman and, as its ``[podman] exe``,
``podman_no_pull.py`` (no ``pull`` of an image that is here: no registry is reachable).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import wdl_conformance as harness

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).resolve().parent / "wdl-conformance.json"
NO_PULL = Path(__file__).resolve().parent / "podman_no_pull.py"


def toilray_runner(container: str, out: Path) -> harness.Runner:
    def command(wdl: str, inputs: str, results: str) -> list[str]:
        return [str(BIN / "toilray-wdl-runner"), wdl, inputs, "-m", results, "--outputDialect", "miniwdl",
                "--container", container, "-o", str(out / Path(results).stem)]

    return command


def miniwdl_runner(out: Path) -> harness.Runner:
    def command(wdl: str, inputs: str, results: str) -> list[str]:
        return [str(BIN / "miniwdl"), "run", wdl, "-i", inputs, "-o", results, "-d", str(out / Path(results).stem)]

    return command


def _setup(engine: str) -> tuple[list[harness.Case], harness.Runner, Path, dict[str, str]]:
    work = Path(tempfile.mkdtemp(prefix=f"wdl-bench-{engine}-"))
    cases = harness.prepare(work)
    env = dict(os.environ)
    if engine == "miniwdl":
        env["MINIWDL__SCHEDULER__CONTAINER_BACKEND"] = "podman"
        env["MINIWDL__PODMAN__EXE"] = json.dumps([sys.executable, str(NO_PULL)])
        return cases, miniwdl_runner(work / "out"), work, env
    return cases, toilray_runner("none" if engine == "toilray-native" else "podman", work / "out"), work, env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=4, help="Cases run at once, all engines together")
    parser.add_argument("--engines", default="toilray,miniwdl")
    parser.add_argument("--limit", type=int, default=None,
                        help="Only the first N cases, for a quick comparison: printed, not saved in the JSON file")
    args = parser.parse_args()
    engines = args.engines.split(",")
    setups = {engine: _setup(engine) for engine in engines}
    if args.limit is not None:
        setups = {engine: (cases[:args.limit], runner, work, env)
                  for engine, (cases, runner, work, env) in setups.items()}
    # The engines' cases alternate in one queue, so that each engine meets the same load.
    queue = [(engine, case) for row in zip(*(setups[engine][0] for engine in engines), strict=True)
             for engine, case in zip(engines, row, strict=True)]

    def run(item: tuple[str, harness.Case]) -> tuple[str, harness.Result]:
        engine, case = item
        _, runner, work, env = setups[engine]
        return engine, harness.run_case(case, runner, work, env, timeout=600)

    load_at_start = os.getloadavg()[0]
    started = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        finished = list(pool.map(run, queue))
    wall = time.monotonic() - started
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for engine in engines:
        results = [result for name, result in finished if name == engine]
        seconds = sorted(result.seconds for result in results)
        saved[engine] = {
            "counts": harness.summary(results), "summed_s": round(sum(seconds)),
            "median_case_s": round(statistics.median(seconds), 1), "wall_s": round(wall),
            "with": [other for other in engines if other != engine], "jobs": args.jobs,
            "load_at_start": load_at_start, "load_at_end": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "failed": [f"{r.case.id} ({r.case.version}): {r.reason[:300]}" for r in results if not r.passed]}
        print(json.dumps({engine: saved[engine]}, indent=2), flush=True)
    if args.limit is None:
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
