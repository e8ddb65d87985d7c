"""The command line: set up, run the chosen scenarios, write RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from harness import call_cache_section, cwl_section, machine, report
from harness.config import CALL_CACHE_RESULTS, CWL_RESULTS, ENGINES, FULL, QUICK, REPO, RESULTS, SCENARIOS
from harness.context import Context
from harness.report import Section
from harness.toolchain import make_engines

TITLES = {
    "fanout": "1. Fan-out",
    "chain": "2. Chain",
    "sort": "3. Merge sort",
    "files": "4. Files",
    "restart": "5. Restart",
    "status": "6. `status`",
    "memory": "7. Leader memory",
    "scale": "9. 100,000 jobs",
}


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})"
        )
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark toilray against Toil and plain Ray and write benchmarks/RESULTS.md.",
    )
    parser.add_argument("--quick", action="store_true", help="Smoke sizes (seconds per run, not minutes).")
    parser.add_argument(
        "-r", "--repetitions", type=int, default=3, help="Runs per engine and size (default 3)."
    )
    parser.add_argument(
        "--only",
        type=lambda t: _names(t, SCENARIOS, "scenario"),
        default=list(SCENARIOS),
        help=f"Comma-separated scenarios to run (default all: {','.join(SCENARIOS)}).",
    )
    parser.add_argument(
        "--engines",
        type=lambda t: _names(t, ENGINES, "engine"),
        default=list(ENGINES),
        help=f"Comma-separated engines (default all: {','.join(ENGINES)}).",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"Where to write the results (default {RESULTS})."
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="Scratch directory for inputs and job stores (default: a new one under /tmp).",
    )
    parser.add_argument("--timeout", type=float, default=None, help="Seconds before one run is killed.")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch directory (job stores, logs).")
    options = parser.parse_args(argv)
    if options.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return options


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def command_line(argv: list[str]) -> str:
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    launcher = os.environ.get("BENCH_LAUNCHER")
    if launcher:
        return shlex.join([launcher, *argv])
    return shlex.join(["python", str(shown), *argv])


def run_scenario(ctx: Context, name: str) -> Section:
    log(f"== scenario {name}")
    module = importlib.import_module(f"harness.scenarios.{name}")
    try:
        return module.run(ctx)
    except Exception as exc:
        ctx.failures.append(f"scenario {name} crashed:\n{traceback.format_exc()}")
        log(f"scenario {name} crashed: {exc!r}")
        return report.skipped(name, TITLES[name], f"the harness failed: {type(exc).__name__}: {exc}")


def exit_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the clean-up below (and the local Ray instance's stop) runs."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    started = datetime.datetime.now(datetime.UTC)
    clock = time.monotonic()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="trb-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # Ray's session directories, kept short: Ray's socket paths must fit in 107 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix="trb-ray-"))
    log(f"scratch directory {workdir}")
    sizes = QUICK if options.quick else FULL
    try:
        engines = make_engines(options.engines, ray_tmp, workdir, log)
        for name, engine in engines.items():
            if engine.unavailable:
                log(f"engine {name} unavailable: {engine.unavailable}")
        ctx = Context(
            sizes=sizes,
            repetitions=options.repetitions,
            workdir=workdir,
            engines=engines,
            timeout_s=options.timeout or sizes.timeout_s,
            keep=options.keep,
            log=log,
        )
        sections = [run_scenario(ctx, name) for name in SCENARIOS if name in options.only]
        # Measured apart (benchmarks/cwl_conformance.py: about 20 minutes a suite), shown from its last run.
        cwl = cwl_section.load(CWL_RESULTS)
        if cwl is not None:
            sections.append(cwl)
        # Measured apart too (benchmarks/call_cache.py), shown from its last run.
        call_cache = call_cache_section.load(CALL_CACHE_RESULTS)
        if call_cache is not None:
            sections.append(call_cache)
        header = machine.header(
            engines,
            command_line(argv),
            started,
            time.monotonic() - clock,
            "quick (smoke sizes)" if options.quick else "full",
            options.repetitions,
        )
        options.output.write_text(report.render(header, sections, ctx.failures, options.quick))
        log(f"wrote {options.output} ({(time.monotonic() - clock) / 60:.1f} min)")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
        if options.keep:
            log(f"kept {workdir}")
        elif options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(workdir / "runs", ignore_errors=True)
    return 0
