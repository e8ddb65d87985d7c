"""The WDL conformance suite run by toilray-wdl-runner and by miniwdl (its podman back end),
with the same harness (tests/wdl_conformance.py): passes per version and summed time.

    .venv/bin/python benchmarks/wdl_conformance.py [--jobs 4] [--engines toilray,toilray-native,miniwdl]

Each engine's result is also merged into benchmarks/wdl-conformance.json (the "WDL conformance"
section of RESULTS.md shows it).

miniwdl runs with MINIWDL__SCHEDULER__CONTAINER_BACKEND=podman and, as its ``[podman] exe``,
``podman_no_pull.py`` (no ``pull`` of an image that is here: no registry is reachable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--engines", default="toilray,miniwdl")
    args = parser.parse_args()
    report = {}
    for engine in args.engines.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"wdl-bench-{engine}-"))
        cases = harness.prepare(work)
        env = dict(os.environ)
        if engine == "miniwdl":
            runner = miniwdl_runner(work / "out")
            env["MINIWDL__SCHEDULER__CONTAINER_BACKEND"] = "podman"
            env["MINIWDL__PODMAN__EXE"] = json.dumps([sys.executable, str(NO_PULL)])
        else:
            runner = toilray_runner("none" if engine == "toilray-native" else "podman", work / "out")
        started = time.monotonic()
        results = harness.run_suite(cases, runner, work, env, args.jobs)
        wall = time.monotonic() - started
        counts = harness.summary(results)
        summed = sum(result.seconds for result in results)
        report[engine] = {"counts": counts, "summed_s": round(summed), "wall_s": round(wall),
                          "failed": [f"{r.case.id} ({r.case.version}): {r.reason[:300]}" for r in results
                                     if not r.passed]}
        report[engine]["load_at_start"] = os.getloadavg()[0]
        print(json.dumps({engine: report[engine]}, indent=2), flush=True)
        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        saved[engine] = report[engine]
        saved[engine]["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
