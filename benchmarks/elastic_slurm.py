"""The fan-out through Slurm from a login node: toilray's elastic mode (``--batchSystem slurm``:
Ray worker nodes as Slurm jobs) against Toil 9.6's ``--batchSystem slurm`` (one Slurm job per
Toil job), on the test cluster of ``.ci/hpc/start-slurm.sh`` (three slurmd "nodes" of 2 cores on
this host), end to end, with the scheduler commands each engine issued, counted by wrappers on
PATH. Toil runs from ``benchmarks/.venv-toil`` (``benchmarks/run.py`` creates it).

    .venv/bin/python benchmarks/elastic_slurm.py --engine toilray --jobs 300 1000 3000
    .venv/bin/python benchmarks/elastic_slurm.py --engine toil --jobs 1000 --timeout 900
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the counting wrappers live with the test that uses them

from counting_commands import calls, counting_wrappers  # noqa: E402

FANOUT = REPO / "benchmarks" / "workflows" / "fanout.py"
TOIL_PYTHON = REPO / "benchmarks" / ".venv-toil" / "bin" / "python"
COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "scontrol", "sinfo")
# Both engines: jobs of 1 core and 100 MB (the fake nodes have 2 cores each).
JOB_OPTIONS = ["--defaultCores", "1", "--defaultMemory", "100M", "--logLevel", "INFO"]
TOILRAY_OPTIONS = ["--nodeCores", "2", "--nodeMemory", "1G", "--maxNodes", "3", "--nodeIdleTime", "10"]


def measure(engine: str, jobs: int, timeout: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(dir="/tmp") as work:  # /tmp: every fake node sees it
        directory = Path(work)
        log = directory / "calls.log"
        counting_wrappers(directory / "bin", log, COMMANDS)
        env = {**os.environ, "PATH": f"{directory / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        python = str(TOIL_PYTHON) if engine == "toil" else sys.executable
        command = [python, str(FANOUT), f"file:{directory / 'store'}", "--jobs", str(jobs), "--batchSystem", "slurm",
                   *JOB_OPTIONS, *(TOILRAY_OPTIONS if engine == "toilray" else [])]
        if engine == "toil":
            # As with Toil's virtualenv activated: the batch jobs run its _toil_worker.
            env["BENCH_ENGINE"] = "toil"
            env["PATH"] = f"{directory / 'bin'}{os.pathsep}{TOIL_PYTHON.parent}{os.pathsep}{os.environ['PATH']}"
        started = time.monotonic()
        try:
            done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=timeout)
            status: object = done.returncode
            output = done.stdout
        except subprocess.TimeoutExpired as exc:
            status = f"killed after {timeout:g} s"
            output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        wall = time.monotonic() - started
        line = next((item for item in output.splitlines() if item.startswith("BENCH_RESULT")), None)
        result = json.loads(line.split(" ", 1)[1]) if line else {}
        if engine == "toil":
            # What Toil left queued or running when it was stopped (its job names start so).
            listed = subprocess.run(["squeue", "--noheader", "--format=%i %j"], capture_output=True, text=True).stdout
            left = [line.split()[0] for line in listed.splitlines() if line.split()[1:2] and
                    line.split()[1].startswith("toil_job")]
            if left:
                subprocess.run(["scancel", *left], capture_output=True)
        return {"engine": engine, "jobs": jobs, "status": status, "end_to_end_s": round(wall, 1),
                "in_workflow_s": round(result["wall_s"], 1) if "wall_s" in result else None,
                "calls": dict(sorted(calls(log).items())), "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("toilray", "toil"), required=True)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000])
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    for jobs in args.jobs:
        print(json.dumps(measure(args.engine, jobs, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
