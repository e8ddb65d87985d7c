"""Second-run times with the call cache and without: ``python benchmarks/call_cache.py [-r N]``.

The merge sort example (``examples/sort.py``, every job cached with ``--callCacheAllJobs``) and
a CWL scatter of 50 tool invocations (``--cachedir``), each run without the cache, then twice
with one. Writes benchmarks/call-cache.json and the "Call cache" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
sys.path.insert(0, str(HERE))

from harness import machine, report  # noqa: E402
from harness.call_cache_section import VARIANTS, section  # noqa: E402
from harness.config import CALL_CACHE_RESULTS, RESULTS  # noqa: E402


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    found = re.search(r"Workflow finished: .*", done.stderr)
    return elapsed, found.group(0).split("] ")[-1] if found else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-r", "--repetitions", type=int, default=2)
    parser.add_argument("--lines", type=int, default=200_000, help="Lines of the file to sort (default 200,000).")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="toilray-cache-bench-"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["TOILRAY_HOME"] = str(scratch / "home")
    subprocess.run([PYTHON, "-m", "toilray", "local-ray", "start"], env=env, check=True, capture_output=True)
    try:
        (scratch / "cwl").mkdir()
        job = scratch / "cwl" / "job.json"
        job.write_text(json.dumps({"items": list(range(50)), "log_dir": str(scratch / "cwl")}))
        workflows = [
            ("merge sort of 200,000 lines (examples/sort.py)",
             [PYTHON, str(REPO / "examples" / "sort.py"), f"file:{scratch / 'sort-store'}",
              "--numLines", str(options.lines), "--fileToSort", str(scratch / "input.txt")],
             2, ["--callCacheAllJobs", "--callCache"]),
            ("CWL scatter of 50 tool runs (tests/workflows/cwl/scatter.cwl)",
             [str(REPO / ".venv" / "bin" / "toilray-cwl-runner"), "--no-container", "--outdir",
              str(scratch / "out"), str(REPO / "tests" / "workflows" / "cwl" / "scatter.cwl"), str(job)],
             1, ["--cachedir"]),
        ]
        subprocess.run([PYTHON, "-c", f"import sys; sys.path.insert(0, {str(REPO / 'examples')!r}); import sort; "
                        f"sort.makeFileToSort({str(scratch / 'input.txt')!r}, {options.lines})"], check=True)
        results = []
        # Options go after the script (a Toil script's own parser) or before the document (cwltool's).
        for name, argv, at, cache_flags in workflows:
            times: dict[str, list[float]] = {variant: [] for variant, _ in VARIANTS}
            second_log = ""
            for repetition in range(options.repetitions):
                cache = scratch / f"cache-{len(results)}-{repetition}"
                times["no cache"].append(timed(argv, env, scratch)[0])
                cached = [*argv[:at], *cache_flags, str(cache), *argv[at:]]
                times["cache, first run"].append(timed(cached, env, scratch)[0])
                elapsed, second_log = timed(cached, env, scratch)
                times["cache, second run"].append(elapsed)
                print(name, {k: round(v[-1], 2) for k, v in times.items()}, second_log, flush=True)
            results.append({"name": name, "times": times, "second_run": second_log})
    finally:
        subprocess.run([PYTHON, "-m", "toilray", "local-ray", "stop"], env=env, capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    data = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": "python benchmarks/call_cache.py "
            + " ".join(sys.argv[1:]), "machine": machine.describe(), "load_after": os.getloadavg()[0],
            "repetitions": options.repetitions, "workflows": results}
    CALL_CACHE_RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    RESULTS.write_text(report.splice(RESULTS.read_text(), section(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
