"""``toilray stats``: Toil's table, the JSON records and the HTML page, as a user reads them.

The page is opened in headless Chromium: a screenshot shows what is drawn, the DOM after
rendering shows the time axis, and Chromium's log shows console errors.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, run_script
from test_cli import WORKFLOWS, toilray

from toilray.common import Toil
from toilray.job import Job
from toilray.jobStores.jobStore import JobStore
from toilray.stats import write_records
from toilray.stats_page import FAILED_COLOUR

JOBS = 200
FLAKY = 20  # jobs that fail their first attempt and succeed on the retry


def flaky(index: int, marks: str) -> int:
    mark = Path(marks) / str(index)
    if not mark.exists():
        mark.touch()
        raise RuntimeError(f"first attempt of job {index} fails")
    return index


def steady(index: int) -> int:
    return index


def third(job: Job) -> str:
    return "third"


def second(job: Job) -> str:
    return job.addFollowOnJobFn(third).rv()


def first(job: Job) -> str:
    # Each job's lone successor runs in the same Ray task, right after it: a chain of three.
    return job.addFollowOnJobFn(second).rv()


def fan_out(job: Job, marks: str) -> int:
    values = [job.addChildFn(flaky, i, marks).rv() if i < FLAKY else job.addChildFn(steady, i).rv()
              for i in range(JOBS)]
    return len(values)


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> str:
    """A --stats run of 200 jobs in which 20 fail once and succeed on their retry."""
    base = tmp_path_factory.mktemp("failing-run")
    (base / "marks").mkdir()
    options = Job.Runner.getDefaultArgumentParser().parse_args(
        [f"file:{base / 'store'}", "--stats", "--retryCount", "1"])
    with Toil(options) as toil:
        assert toil.start(Job.wrapJobFn(fan_out, str(base / "marks"))) == JOBS
    return f"file:{base / 'store'}"


def stats(*args: str, env: dict[str, str]) -> str:
    done = toilray("stats", *args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def block_rows(table: str) -> list[list[str]]:
    """Every block's three lines (header, names, numbers) as printed."""
    lines = table.splitlines()
    return [lines[i - 1:i + 2] for i, line in enumerate(lines) if line.split()[:2] == ["n", "|"]]


def worker_count(table: str) -> int:
    lines = table.splitlines()
    return int(lines[lines.index("Worker") + 3].split()[0])


def summary_workers(page: str) -> int:
    found = re.search(r"in (\d+) worker\(s\)", page)
    assert found, "the page names no worker count"
    return int(found.group(1))


def test_table_counts_every_attempt_and_marks_the_failed(failing_run: str, script_env: dict[str, str]) -> None:
    records = json.loads(stats(failing_run, "--json", env=script_env))
    assert sum(1 for r in records if not r["ok"]) == FLAKY
    assert sorted((r["attempt"], r["ok"]) for r in records if r["category"] == "flaky") == (
        [(1, False)] * FLAKY + [(2, True)] * FLAKY)
    table = stats(failing_run, env=script_env)
    lines = table.splitlines()
    assert f"Failed: {FLAKY} failed attempts of {len(records)}, all counted below" in lines
    job_block = lines.index("Job")
    assert int(lines[job_block + 5].split()[0]) == len(records)  # the Job section counts every attempt
    flaky_block = lines.index(f" flaky  ({FLAKY} failed attempts)")
    assert int(lines[flaky_block + 3].split()[0]) == 2 * FLAKY
    assert worker_count(table) == len({r["task"] for r in records})


def test_columns_stay_apart_and_aligned_whatever_the_numbers(failing_run: str, script_env: dict[str, str],
                                                             tmp_path: Path) -> None:
    # A copy of the store with a second session's records (as a restarted leader writes them), wide numbers.
    copy = tmp_path / "store"
    shutil.copytree(failing_run.removeprefix("file:"), copy)
    recorded = json.loads(stats(f"file:{copy}", "--json", env=script_env))
    write_records(JobStore(f"file:{copy}"), [dict(recorded[0], job_id="wide", task="wide-task", memory_kib=1348812,
                                                  wall=123456.78, cpu=98765.43)])
    table = stats(f"file:{copy}", env=script_env)
    blocks = block_rows(table)
    assert len(blocks) >= 5
    bars = {tuple(m.start() for m in re.finditer(r"\|", line)) for block in blocks for line in block}
    assert len(bars) == 1, table  # every block's columns line up, header, names and numbers
    for _, _, numbers in blocks:
        count, *groups = numbers.split("|")
        assert count.strip().isdigit()
        for cells in groups:
            values = cells.split()
            assert len(values) == 5, numbers  # five numbers, none run into the next
            for value in values:
                float(value.removesuffix("K"))
    assert "1348812K" in table


def _chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Open the page in headless Chromium, offline, with the page's console logged to stderr."""
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1300,1000", "--virtual-time-budget=10000", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )


def rendered(page: Path, tmp_path: Path) -> tuple[list[tuple[int, int, int]], int, str]:
    """The page as Chromium draws it: the screenshot's pixels, its width, and the DOM after the
    scripts ran. Fails on any console message."""
    from PIL import Image

    shot = tmp_path / "shot.png"
    browser = _chromium(page, tmp_path, f"--screenshot={shot}")
    assert shot.exists(), browser.stderr
    console = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    image = Image.open(shot).convert("RGB")
    data = image.tobytes()
    dom = _chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    return [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)], image.width, dom.stdout


def coloured_pixels(pixels: list[tuple[int, int, int]]) -> int:
    return sum(1 for pixel in pixels if max(pixel) - min(pixel) > 60)


def test_page_draws_a_time_axis_and_the_failed_attempts(failing_run: str, script_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    table = stats(failing_run, "--html", str(page), env=script_env)
    text = page.read_text()
    assert "https://" not in text.split("<body>", 1)[1].split("<script", 1)[0]  # nothing to fetch
    assert summary_workers(text) == worker_count(table)
    assert f"({FLAKY} failed)" in text
    pixels, width, dom = rendered(page, tmp_path)
    timeline = dom.split('id="timeline"', 1)[1].split('id="categories"', 1)[0]
    ticks = re.findall(r'<g class="xtick"><text[^>]*>([^<]+)</text>', timeline)
    assert len(ticks) >= 3 and ticks[0] == "0", ticks
    assert [float(t) for t in ticks] == sorted(float(t) for t in ticks)
    assert "seconds since the first job started" in timeline
    red = tuple(int(FAILED_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    # The legend on the right has one swatch of the colour: the failed bars and their crosses
    # are what is left of it.
    failed = sum(1 for index, pixel in enumerate(pixels) if index % width < width * 3 // 4
                 and max(abs(a - b) for a, b in zip(pixel, red, strict=True)) < 16)
    assert failed > 10 * FLAKY, f"the failed attempts are not drawn ({failed} pixels of their colour)"
    assert coloured_pixels(pixels) > 20000, "the timeline looks blank"


def test_stats_report_in_toils_layout_json_and_html(tmp_path: Path, script_env: dict[str, str]) -> None:
    store = tmp_path / "store"
    dirs = [tmp_path / name for name in ("a", "b", "c")]
    for directory in dirs:
        directory.mkdir()
    done = run_script(EXAMPLES / "discoverfiles.py", f"file:{store}", "--stats", "--paths", *map(str, dirs),
                      env=script_env)
    assert done.returncode == 0, done.stderr
    table = stats(f"file:{store}", "--html", str(tmp_path / "run.html"), env=script_env)
    lines = table.splitlines()
    assert lines[0] == "Batch System: ray" and lines[1].startswith("Default Cores: ")
    assert lines[4] == "Worker" and "Job" in lines
    for category in ("sysFiles", "userFiles", "discoverFiles"):
        block = lines.index(f" {category}")
        assert lines[block + 1].split() == ["Count", "|", "Time*", "|", "Clock", "|", "Wait", "|", "Memory"]
        assert lines[block + 3].split()[0] == "1"  # one job in each category
    records: list[dict[str, Any]] = json.loads(stats(f"file:{store}", "--json", env=script_env))
    assert sorted(r["category"] for r in records if r["category"] in ("sysFiles", "userFiles")) == [
        "sysFiles", "userFiles"]
    assert worker_count(table) == len({r["task"] for r in records})
    assert summary_workers((tmp_path / "run.html").read_text()) == worker_count(table)
    pixels, _, dom = rendered(tmp_path / "run.html", tmp_path)
    assert all(name in dom for name in ("sysFiles", "userFiles", "discoverFiles"))  # the legend
    assert coloured_pixels(pixels) > 2000, "the timeline looks blank"


def test_chained_jobs_are_one_worker_in_the_table_and_on_the_page(tmp_path: Path, ray_address: str,
                                                                  script_env: dict[str, str]) -> None:
    options = Job.Runner.getDefaultArgumentParser().parse_args([f"file:{tmp_path / 'store'}", "--stats"])
    with Toil(options) as toil:
        assert toil.start(Job.wrapJobFn(first)) == "third"
    page = tmp_path / "run.html"
    table = stats(f"file:{tmp_path / 'store'}", "--html", str(page), env=script_env)
    lines = table.splitlines()
    # The manual's example: three chained jobs in one worker.
    assert worker_count(table) == 1 and summary_workers(page.read_text()) == 1
    assert lines[lines.index("Job") + 2].split() == ["|", "3", "3", "3", "3"]


def test_stats_without_records_is_a_clear_error(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    run_script(WORKFLOWS / "flaky.py", f"file:{tmp_path / 'store'}", "--countDir", str(counts), env=script_env)
    done = toilray("stats", f"file:{tmp_path / 'store'}", env=script_env)
    assert done.returncode == 2 and "run the workflow with --stats" in done.stderr
