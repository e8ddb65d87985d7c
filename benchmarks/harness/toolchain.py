"""The engines: which interpreter runs each, with what environment and options, and setting
up the Toil virtualenv when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import TOIL_REQUIREMENT, TOIL_VENV, WORKFLOWS


@dataclass(frozen=True, slots=True)
class Engine:
    """How to run a workflow script under one engine; ``unavailable`` says why it cannot.

    ``local_ray_home``: the ``TOILRAY_HOME`` of the local Ray instance (``toilray local-ray``)
    that must be running while this engine runs (toilray-warm); None for the others."""

    name: str
    python: str
    env: dict[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    unavailable: str | None = None
    local_ray_home: Path | None = None

    def workflow_command(
        self, script: str, job_store: Path, work_dir: Path, clean: str, args: list[str]
    ) -> list[str]:
        """A Toil workflow script's command line: the job store, the engine's options, ``args``."""
        return [
            self.python,
            str(WORKFLOWS / script),
            f"file:{job_store}",
            *self.options,
            "--workDir",
            str(work_dir),
            "--clean",
            clean,
            "--logLevel",
            "WARNING",
            *args,
        ]

    def script_command(self, script: str, args: list[str]) -> list[str]:
        return [self.python, str(WORKFLOWS / script), *args]

    def tool(self, name: str) -> Path:
        """A console script installed beside this engine's interpreter (``toil``, ``toilray``)."""
        return Path(self.python).parent / name


def _probe(python: str, code: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    lines = (proc.stdout if proc.returncode == 0 else proc.stderr).strip().splitlines()
    return proc.returncode == 0, lines[-1] if lines else ""


def base_env(ray_tmp: Path) -> dict[str, str]:
    """The harness's environment for the engines: no ``RAY_ADDRESS`` nor virtualenv of its own,
    unbuffered output, and Ray's session directories (one per Ray start) where it removes them."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PYTHONUNBUFFERED"] = "1"
    env["RAY_TMPDIR"] = str(ray_tmp)
    return env


def ensure_toil_venv(log: Callable[[str], None]) -> tuple[str | None, str]:
    """Create benchmarks/.venv-toil with Toil from PyPI unless it already has it."""
    python = TOIL_VENV / "bin" / "python"
    wanted = TOIL_REQUIREMENT.split("==", 1)[1]
    check = f"import toil.version as v; assert v.version.startswith({wanted!r}), v.version"
    if python.exists() and _probe(str(python), check)[0]:
        return str(python), ""
    log(f"setting up {TOIL_VENV} with {TOIL_REQUIREMENT} (one time)")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(TOIL_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "--quiet", TOIL_REQUIREMENT],
    ]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            return None, f"'{' '.join(step)}' failed: {tail}"
    ok, detail = _probe(str(python), check)
    return (str(python), "") if ok else (None, f"Toil does not import after installing it: {detail}")


def make_engines(
    wanted: list[str], ray_tmp: Path, workdir: Path, log: Callable[[str], None]
) -> dict[str, Engine]:
    """The engines asked for, each either runnable or carrying the reason it is not.

    Each toilray engine gets a private ``TOILRAY_HOME`` under ``workdir``: toilray-warm's is
    where the harness starts its local Ray instance; the embedded engine's stays empty and its runs
    set ``TOILRAY_EMBEDDED_RAY``, so neither a ``toilray local-ray`` instance of the user's (in
    ``~/.toilray``) nor one its own runs would leave behind can make it warm."""
    base = base_env(ray_tmp)
    engines: dict[str, Engine] = {}
    homes = {"toilray": workdir / "toilray-home-embedded", "toilray-warm": workdir / "toilray-home-warm"}
    for name in ("toilray", "toilray-warm", "ray"):
        if name not in wanted:
            continue
        env = dict(base, BENCH_ENGINE="ray" if name == "ray" else "toilray")
        if name in homes:
            env["TOILRAY_HOME"] = str(homes[name])
        if name == "toilray":
            # Every run starts and stops its own Ray (as the first run of the day pays Ray's start),
            # instead of leaving the shared local Ray running for the next.
            env["TOILRAY_EMBEDDED_RAY"] = "1"
        # The harness's own interpreter, which imports toilray itself.
        warm_home = homes[name] if name == "toilray-warm" else None
        engines[name] = Engine(name, sys.executable, env, local_ray_home=warm_home)
    if "toil" in wanted:
        python, why = ensure_toil_venv(log)
        env = dict(
            base,
            BENCH_ENGINE="toil",
            VIRTUAL_ENV=str(TOIL_VENV),
            PATH=f"{TOIL_VENV / 'bin'}{os.pathsep}{base.get('PATH', '')}",
        )
        engines["toil"] = Engine(
            "toil",
            python or "",
            env,
            options=("--batchSystem", "single_machine"),
            unavailable=None if python else f"the Toil virtualenv could not be set up: {why}",
        )
    return engines
