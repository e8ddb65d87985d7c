"""Where things are, and the workload sizes of a full and a ``--quick`` run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO = BENCH_DIR.parent
WORKFLOWS = BENCH_DIR / "workflows"
TOIL_VENV = BENCH_DIR / ".venv-toil"
TOIL_REQUIREMENT = "toil==9.6.0"
RESULTS = BENCH_DIR / "RESULTS.md"
# Written by benchmarks/cwl_conformance.py; RESULTS.md shows it when present.
CWL_RESULTS = BENCH_DIR / "cwl-conformance.json"
CALL_CACHE_RESULTS = BENCH_DIR / "call-cache.json"

SCENARIOS = ("fanout", "chain", "sort", "files", "restart", "status", "memory", "scale")
ENGINES = ("toil", "toilray", "toilray-warm", "ray")
# toilray with embedded Ray, and toilray connecting to a local Ray instance already running.
TOILRAY_ENGINES = ("toilray", "toilray-warm")


@dataclass(frozen=True, slots=True)
class Sizes:
    fanout: tuple[int, ...]
    fanout_toil_max: int
    chain: tuple[int, ...]
    sort_lines: int
    sort_line_length: int
    sort_split: int
    big_file_bytes: int
    shared_file_bytes: int
    shared_readers: int
    restart_jobs: int
    restart_jobs_toil: int
    restart_sleep_s: float
    status_jobs: int
    scale_jobs: int
    timeout_s: float


FULL = Sizes(
    fanout=(100, 1_000, 10_000),
    fanout_toil_max=1_000,
    chain=(100, 1_000),
    sort_lines=200_000,
    sort_line_length=50,
    sort_split=100_000,
    big_file_bytes=1 << 30,
    shared_file_bytes=200 * 10**6,
    shared_readers=50,
    restart_jobs=10_000,
    restart_jobs_toil=1_000,
    restart_sleep_s=0.0,
    status_jobs=100_000,
    scale_jobs=100_000,
    timeout_s=3600.0,
)

QUICK = Sizes(
    fanout=(20, 50),
    fanout_toil_max=50,
    chain=(20, 50),
    sort_lines=2_000,
    sort_line_length=50,
    sort_split=20_000,
    big_file_bytes=10 * 2**20,
    shared_file_bytes=10 * 2**20,
    shared_readers=8,
    restart_jobs=50,
    restart_jobs_toil=50,
    restart_sleep_s=0.05,
    status_jobs=200,
    scale_jobs=500,
    timeout_s=600.0,
)
