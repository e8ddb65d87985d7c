"""The workflow options as a user meets them: every one described with its default in ``--help``
(a script's and ``toilray run``'s), each doing what it says, or refused with what to use instead."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from conftest import run_script

from toilray.job import Job
from toilray.options import REPLACED_OPTIONS

# Options kept so that Toil command lines run unchanged; their help says what toilray does instead.
COMPATIBILITY = "Accepted for Toil compatibility"

HELLO = """\
from toilray.common import Toil
from toilray.job import Job


def hello(job):
    job.log("hello from the root")


if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(hello))
"""

# A root job and a child that fails: the messages file shows both lives.
ONE_FAILS = """\
from toilray.common import Toil
from toilray.job import Job


def broken(job):
    raise RuntimeError("broken on purpose")


def root(job):
    job.addChildJobFn(broken)


if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(root))
"""

# A job that runs until the leader has logged a --statusWait line while it was running.
WAITS_FOR_STATUS = """\
import time

from toilray.common import Toil
from toilray.job import Job


def wait_for_status(job, log_file):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log_file) as handle:
            if "1 running" in handle.read():
                return
        time.sleep(0.1)


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    options = parser.parse_args()
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(wait_for_status, options.logFile))
"""


def _toilray(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toilray", *args], capture_output=True, text=True, timeout=300)


def test_every_option_is_described_with_its_default() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    undescribed, no_default = [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest in REPLACED_OPTIONS:
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        text = action.help or ""
        if not text or text == argparse.SUPPRESS:
            undescribed.append(name)
        elif action.default not in (None, False, []) and "default" not in text and not text.startswith(COMPATIBILITY):
            no_default.append(name)
    assert undescribed == []
    assert no_default == []


def test_replaced_options_are_hidden_from_help() -> None:
    text = Job.Runner.getDefaultArgumentParser().format_help()
    for name in ("maxLocalJobs", "mesosEndpoint"):
        assert f"--{name}" not in text


def test_script_help_and_toilray_run_help_show_the_workflow_options(tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text(HELLO)
    described = "Times a failing job is retried (default 1"
    for shown in (subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                 timeout=120),
                  _toilray("run", "--help"), _toilray("run", str(script), "--help")):
        assert shown.returncode == 0, shown.stderr
        assert "--retryCount" in shown.stdout
        assert described in " ".join(shown.stdout.split())
    run_help = _toilray("run", "--help").stdout
    assert "toilray run [OPTIONS] SCRIPT [ARGS]..." in run_help
    assert "--statusWait" in run_help


def test_options_toilray_does_not_use_are_refused_in_one_line(tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text(HELLO)
    for option, advice in (("--maxLocalJobs", "--maxCores"), ("--mesosEndpoint", "--rayAddress")):
        result = subprocess.run([sys.executable, str(script), f"file:{tmp_path / 'store'}", option, "2"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        last = result.stderr.strip().splitlines()[-1]
        assert f"{option} is not used by toilray" in last and advice in last
    assert not (tmp_path / "store").exists()


def test_sse_key_is_refused_with_an_object_store(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 32)
    script = tmp_path / "hello.py"
    script.write_text(HELLO)
    result = _toilray("run", str(script), "s3://no-such-bucket/prefix", "--sseKey", str(key))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "toilray: error: BadOptionError: --sseKey is not used by toilray's s3 job store: it does not encrypt with "
        "a key of yours; turn on the bucket's default encryption instead"
    ]


def test_write_messages_records_each_jobs_life_in_toils_format(tmp_path: Path, script_env: dict[str, str]) -> None:
    script = tmp_path / "one_fails.py"
    script.write_text(ONE_FAILS)
    messages = tmp_path / "messages.txt"
    # Unchained, so that each job is issued as its own Ray task.
    result = run_script(script, f"file:{tmp_path / 'store'}", "--retryCount", "0", "--disableChaining",
                        "--writeMessages", str(messages), env=script_env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = [line.split("\t") for line in messages.read_text().splitlines()]
    by_topic: dict[str, list[list[str]]] = {}
    for topic, *fields in lines:
        by_topic.setdefault(topic, []).append(fields)
    assert sorted(f[0] for f in by_topic["toil.bus.JobIssuedMessage"]) == ["broken", "root"]
    completed = {f[0]: f[2] for f in by_topic["toil.bus.JobCompletedMessage"]}
    assert completed == {"root": "0", "broken": "1"}
    assert [f[0] for f in by_topic["toil.bus.JobFailedMessage"]] == ["broken"]
    ids = {f[1] for f in by_topic["toil.bus.JobIssuedMessage"]}
    assert {f[0] for f in by_topic["toil.bus.JobUpdatedMessage"]} == ids
    # The default --statusWait (an hour) logs no status line in a short run.
    assert "Workflow status:" not in result.stderr


def test_status_wait_logs_the_job_counts(tmp_path: Path, script_env: dict[str, str]) -> None:
    script = tmp_path / "waits.py"
    script.write_text(WAITS_FOR_STATUS)
    log = tmp_path / "leader.log"
    result = run_script(script, f"file:{tmp_path / 'store'}", "--statusWait", "0.5", "--logFile", str(log),
                        env=script_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Workflow status: 0 done, 1 running, 0 queued, 0 failed" in log.read_text()
