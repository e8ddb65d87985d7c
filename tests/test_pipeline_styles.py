"""Workflows written the way real Toil pipelines (cactus, toil-rnaseq, protect, toil-lib) use
the API, and what the manual shows a user of a finished or failed workflow: each run as a
user runs it, on the session's Ray."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import run_script

WORKFLOWS = Path(__file__).parent / "workflows"


def toilray(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toilray", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def last_json(out: str) -> object:
    return json.loads(out.strip().splitlines()[-1])


# -- the pipelines' styles ----------------------------------------------------------------------


def test_cactus_style_options_changed_after_parsing_win_over_the_command_line(
        tmp_path: Path, script_env: dict[str, str]) -> None:
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    store = tmp_path / "store"
    done = run_script(WORKFLOWS / "cactus_style.py", f"file:{store}", "--logLevel=CRITICAL", "--retryCount", "0",
                      "--defaultMemory", "1G", "--attemptDir", str(attempts), env=script_env)
    assert done.returncode == 0, done.stderr
    out = last_json(done.stdout)
    assert isinstance(out, dict)
    # retryCount 2 (three tries), the memory string "300M", the pipeline's own attribute in the job.
    assert out["result"] == {"memory": 300_000_000, "myThing": "my seed file", "attempt": 3}
    # DEBUG, set in the script, beat --logLevel=CRITICAL: the jobs' debug messages reached the
    # leader's root logger in real time (realTimeLogging set in the script), once per attempt.
    assert out["messages"].count(["INFO", "aligning with my seed file"]) == 3
    assert out["messages"].count(["DEBUG", "alignment details at debug level"]) == 3
    assert "[D] [toilray" in done.stderr  # toilray's own debug lines too
    assert "options.targetTime has no effect in toilray" in done.stderr
    assert not store.exists()  # clean = "always"


def test_rnaseq_style_disk_promised_from_an_upstream_files_size(tmp_path: Path,
                                                               script_env: dict[str, str]) -> None:
    done = run_script(WORKFLOWS / "rnaseq_style.py", f"file:{tmp_path / 'store'}", env=script_env)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout) == {"disk": 2 * 123_457, "size": 123_457, "read": 123_457}


def test_protect_style_encapsulated_subgraph_and_log_to_master(tmp_path: Path,
                                                               script_env: dict[str, str]) -> None:
    done = run_script(WORKFLOWS / "protect_style.py", f"file:{tmp_path / 'store'}", env=script_env)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout) == {"merged": ["mutect:chr1:100", "strelka:chr1:100"]}
    for message in ("protect-style: ran the mutect caller", "protect-style: ran the strelka caller",
                    "protect-style: 2 calls merged"):
        assert re.search(rf"Got message from job at time .*: {message}$", done.stderr, re.MULTILINE), done.stderr


def test_toillib_style_service_start_value_used_by_a_child(tmp_path: Path, script_env: dict[str, str]) -> None:
    done = run_script(WORKFLOWS / "toillib_style.py", f"file:{tmp_path / 'store'}", env=script_env)
    assert done.returncode == 0, done.stderr
    out = last_json(done.stdout)
    assert isinstance(out, dict)
    assert out["page"] == "served by the toil-lib style service"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", out["url"])


# -- what the manual shows ------------------------------------------------------------------------


def test_uncaught_failure_names_failed_jobs_exception_and_status_counts_the_jobs_left(
        tmp_path: Path, script_env: dict[str, str]) -> None:
    store = f"file:{tmp_path / 'store'}"
    failed = run_script(WORKFLOWS / "fails.py", store, env=script_env)
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"toilray: error: FailedJobsException: The job store '{re.escape(store)}' contains 1 "
                        r"failed jobs: 'broken' .*--restart\.", last), last

    status = toilray("status", store, env=script_env)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert (f"There are 2 unfinished jobs, 1 parent jobs with children, 0 jobs with services, 0 services, "
            f"and 1 totally failed jobs currently in {store}.") in lines
    assert (f"Of the 2 jobs considered, there are 1 completely failed jobs, 1 jobs with children, 0 jobs ready "
            f"to run, 0 zombie jobs, 0 jobs with services, 0 services, and 1 jobs with log files currently in "
            f"{store}.") in lines
    assert f"Workflow in {store}: FAILED" in lines  # toilray's own lines stay


def test_caught_failed_jobs_exception_has_toils_attributes(tmp_path: Path, script_env: dict[str, str]) -> None:
    store = f"file:{tmp_path / 'store'}"
    done = run_script(WORKFLOWS / "fails.py", store, "--catch", env=script_env)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout) == {"jobStoreLocator": store, "numberOfFailedJobs": 1, "exit_code": 1}


def stats_lines(store: str, env: dict[str, str]) -> list[str]:
    stats = toilray("stats", store, env=env)
    assert stats.returncode == 0, stats.stderr
    return stats.stdout.splitlines()


def workers_and_jobs(lines: list[str]) -> tuple[int, list[str], int]:
    """From `toilray stats`: the Worker count n, the Worker Jobs min/med/ave/max, the Job count n."""
    worker, job = lines.index("Worker"), lines.index("Job")
    return (int(lines[worker + 3].split("|")[0]), lines[job + 2].split()[1:],
            int(lines[job + 5].split("|")[0]))


def test_manual_discoverfiles_stats_one_worker_ran_the_chain_and_status_of_the_kept_store(
        tmp_path: Path, script_env: dict[str, str]) -> None:
    store = f"file:{tmp_path / 'store'}"
    done = run_script(WORKFLOWS / "discoverfiles_manual.py", store, "--stats", env=script_env)
    assert done.returncode == 0, done.stderr

    lines = stats_lines(store, script_env)
    assert workers_and_jobs(lines) == (1, ["3", "3", "3", "3"], 3)
    for name in ("sysFiles", "userFiles", "discoverFiles"):
        assert f" {name}" in lines

    status = toilray("status", store, env=script_env)
    assert status.returncode == 0, status.stderr
    assert "Root job is absent. The workflow may have completed successfully." in status.stdout.splitlines()


def test_a_chain_made_by_a_job_runs_in_that_jobs_worker(tmp_path: Path, script_env: dict[str, str]) -> None:
    # examples/discoverfiles.py: a root job makes the three-job chain; Toil chains all four.
    store = f"file:{tmp_path / 'store'}"
    done = run_script(Path(__file__).parent.parent / "examples" / "discoverfiles.py", store, "--stats",
                      "--paths", str(tmp_path), str(tmp_path), str(tmp_path), env=script_env)
    assert done.returncode == 0, done.stderr
    assert workers_and_jobs(stats_lines(store, script_env)) == (1, ["4", "4", "4", "4"], 4)


def test_realtime_messages_reach_the_root_logger_at_the_workflows_level(tmp_path: Path,
                                                                       script_env: dict[str, str]) -> None:
    at_info = run_script(WORKFLOWS / "realtime_levels.py", f"file:{tmp_path / 'info'}", env=script_env)
    assert at_info.returncode == 0, at_info.stderr
    assert last_json(at_info.stdout) == [["INFO", "realtime info: 50% done"],
                                         ["WARNING", "realtime warning: with an argument"]]

    at_debug = run_script(WORKFLOWS / "realtime_levels.py", f"file:{tmp_path / 'debug'}", "--logLevel", "DEBUG",
                          env=script_env)
    assert at_debug.returncode == 0, at_debug.stderr
    assert last_json(at_debug.stdout) == [["INFO", "realtime info: 50% done"],
                                          ["DEBUG", "realtime debug: the details"],
                                          ["WARNING", "realtime warning: with an argument"]]
