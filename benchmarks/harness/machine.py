"""The header of RESULTS.md: machine, versions, date and the exact command."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from typing import Any

import psutil

from harness.config import REPO
from harness.toolchain import Engine


def _output(argv: list[str], cwd: str | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def cpu_model() -> str:
    for line in _output(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe() -> dict[str, Any]:
    """This machine now, as the Machine line of RESULTS.md shows it (``describe_text``)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "load_average": round(os.getloadavg()[0], 2),
    }


def describe_text(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']:.1f} GiB RAM, "
        f"{machine['os']}; load average at start {machine['load_average']:.2f}"
    )


def _version(engine: Engine | None, code: str) -> str:
    if engine is None or engine.unavailable is not None:
        return "not available"
    return _output([engine.python, "-c", code]) or "unknown"


def toilray_revision() -> str:
    commit = _output(["git", "rev-parse", "--short", "HEAD"], cwd=str(REPO))
    if not commit:
        return "unknown revision"
    dirty = _output(["git", "status", "--porcelain", "--", "toilray", "backends"], cwd=str(REPO))
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def header(
    engines: dict[str, Engine],
    command: str,
    started: datetime.datetime,
    elapsed_s: float,
    mode: str,
    repetitions: int,
) -> list[str]:
    toilray = engines.get("toilray") or engines.get("toilray-warm") or engines.get("ray")
    toil = engines.get("toil")
    return [
        f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')} (harness ran {elapsed_s / 60:.1f} min)",
        f"- Command: `{command}`",
        f"- Mode: {mode}; {repetitions} repetition(s) per measurement, engines alternating; medians shown",
        f"- Machine: {describe_text(describe())}",
        f"- Python: toilray/Ray {_version(toilray, 'import platform; print(platform.python_version())')}, "
        f"Toil {_version(toil, 'import platform; print(platform.python_version())')}",
        f"- toilray {_version(toilray, 'import toilray; print(toilray.__version__)')} "
        f"({toilray_revision()}), "
        f"Ray {_version(toilray, 'import ray; print(ray.__version__)')}, "
        f"Toil {_version(toil, 'from toil.version import version; print(version)')}",
        "- Toil: `--batchSystem single_machine`, file job store; toilray: embedded Ray (no `--rayAddress`, "
        "`TOILRAY_EMBEDDED_RAY=1`; each run starts and stops its own Ray, as the first run of the day does), "
        "file job store; both `--clean always`, `--logLevel WARNING`. "
        "Plain Ray: `@ray.remote` tasks, no job store.",
        "- *toilray-warm*: the same toilray runs on the machine of a user who ran `toilray local-ray start` "
        "once: a long-lived local Ray instance is already up, and each workflow (no `--rayAddress`, "
        "`RAY_ADDRESS` unset) connects to it instead of starting Ray. The harness starts the instance "
        "(`python -m toilray local-ray start`, with a private `TOILRAY_HOME` in its scratch directory) before "
        "each measurement's runs and stops it (`local-ray stop`) after them, so it sits idle during the other "
        "engines' runs of that measurement; the embedded toilray runs get an empty `TOILRAY_HOME` of their "
        "own and never use it. toilray-warm's times leave out Ray's start-up, which the instance paid once.",
        "- *End to end*: the whole process, as the harness sees it (interpreter, imports, Ray or Toil "
        "start-up, shutdown). *In workflow*: measured by the script from before `with Toil(...)` to "
        "after `start()` returns (for plain Ray: from before `ray.init` to after `ray.get`). *vs toilray*: "
        "the engine's time divided by toilray's (above 1x: toilray is faster).",
    ]
