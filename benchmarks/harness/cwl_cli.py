"""The command line of ``benchmarks/cwl_conformance.py``: the CWL v1.2 conformance suite, run by
cwltest once per CWL runner, summed up in benchmarks/cwl-conformance.json (and, on demand, in
the "CWL conformance" section of RESULTS.md)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cwltest.utils import load_and_validate_tests, shortname
from schema_salad.exceptions import ValidationException

from harness import cwl_section, machine, report
from harness.cli import command_line, exit_on_sigterm, log
from harness.config import CWL_RESULTS, REPO, RESULTS, TOIL_VENV
from harness.local_ray import LocalRay
from harness.process import kill_tree
from harness.toolchain import base_env
from toilray.lib import container_engine

SUITE_ENV = "TOILRAY_CWL_CONFORMANCE"
SUITE_BESIDE = Path("shared", "conformance", "cwl-v1.2")
TESTS_FILE = "conformance_tests.yaml"
PROBE_TIMEOUT_S = 300


@dataclass(frozen=True, slots=True)
class Runner:
    """A CWL runner; ``package`` is the distribution whose version names it, ``warm`` says that
    its tests connect to a local Ray instance started for the run (``toilray local-ray``)."""

    name: str
    executable: Path
    package: str
    warm: bool = False


RUNNERS = {
    "toilray": Runner("toilray", REPO / ".venv" / "bin" / "toilray-cwl-runner", "toilray", warm=True),
    "cwltool": Runner("cwltool", REPO / ".venv" / "bin" / "cwltool", "cwltool"),
    "toil": Runner("toil", TOIL_VENV / "bin" / "toil-cwl-runner", "toil"),
}


@dataclass(frozen=True, slots=True)
class Test:
    number: int  # 1-based, as cwltest's -n counts
    id: str
    tags: tuple[str, ...]


class Fatal(Exception):
    """Ends the script with a one-line error."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/cwl_conformance.py",
        description="Run the CWL v1.2 conformance suite with cwltest for each runner and write the passed, "
        "failed and unsupported tests, their times and a per-tag summary to benchmarks/cwl-conformance.json.",
    )
    parser.add_argument(
        "--runner",
        action="append",
        choices=list(RUNNERS),
        help="A runner to measure; repeat for several (default: toilray).",
    )
    parser.add_argument(
        "--suite",
        type=Path,
        help=f"The suite's directory (with {TESTS_FILE}); default ${SUITE_ENV}, else {SUITE_BESIDE} "
        "in the repository or beside it or one of its parents.",
    )
    parser.add_argument("-j", "--jobs", type=int, default=2, help="Tests run at once (cwltest -j; default 2).")
    parser.add_argument("-n", dest="numbers", help="Only these tests, by number: 1,3-6,9 (as cwltest -n).")
    parser.add_argument("-s", "--ids", help="Only these tests, by id: id1,id2 (as cwltest -s).")
    parser.add_argument(
        "--timeout", type=int, help="Seconds before cwltest gives up on one test (cwltest --timeout; its default 600)."
    )
    parser.add_argument(
        "--output", type=Path, default=CWL_RESULTS, help=f"Where to write the JSON (default {CWL_RESULTS})."
    )
    parser.add_argument(
        "--write-results",
        action="store_true",
        help="Also put the 'CWL conformance' section into RESULTS.md, leaving its other sections as they are.",
    )
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="Run nothing: summarize the JSON already in --output (with --write-results: re-render the section).",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"The page --write-results updates (default {RESULTS})."
    )
    parser.add_argument(
        "--no-container",
        action="store_true",
        help="Pass --no-container to the runners (default: containers, on the engine toilray.lib.container_engine "
        "finds; DOCKER_HOST is set to its Docker API socket for cwltool's docker command).",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the scratch directory (JUnit reports, cwltest logs).")
    options = parser.parse_args(argv)
    options.runner = list(dict.fromkeys(options.runner or ["toilray"]))
    if options.jobs < 1:
        parser.error("-j must be at least 1")
    return options


def find_suite(given: Path | None) -> Path:
    """``--suite``, else ``$TOILRAY_CWL_CONFORMANCE``, else shared/conformance/cwl-v1.2 in the
    repository or beside it or one of its parents (where a checkout's shared files live)."""
    if given is not None:
        candidates, origin = [given], "--suite"
    elif os.environ.get(SUITE_ENV):
        candidates, origin = [Path(os.environ[SUITE_ENV])], f"${SUITE_ENV}"
    else:
        candidates, origin = [directory / SUITE_BESIDE for directory in (REPO, *REPO.parents)], ""
    for candidate in candidates:
        if (candidate / TESTS_FILE).is_file():
            return candidate.resolve()
    if origin:
        raise Fatal(f"{origin} {candidates[0]}: no {TESTS_FILE} there")
    raise Fatal(
        f"no CWL v1.2 conformance suite found ({SUITE_BESIDE} in {REPO} or its parents): "
        f"pass --suite PATH or set ${SUITE_ENV}"
    )


def load_tests(suite: Path) -> list[Test]:
    """The suite's tests in cwltest's order (``$import``s expanded) and with its names."""
    try:
        entries, _ = load_and_validate_tests(str(suite / TESTS_FILE))
    except ValidationException as exc:
        raise Fatal(f"{suite / TESTS_FILE} does not load: {str(exc).splitlines()[0]}") from exc
    return [
        Test(number, entry.get("label") or shortname(entry["id"]), tuple(entry.get("tags", ())))
        for number, entry in enumerate(entries, start=1)
    ]


def choose(tests: list[Test], numbers: str | None, ids: str | None) -> list[Test]:
    """The tests ``-n`` and ``--ids`` name together, in suite order; all of them without either."""
    if numbers is None and ids is None:
        return tests
    chosen: set[int] = set()
    for part in (numbers or "").split(","):
        if not part.strip():
            continue
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise Fatal(f"-n {numbers}: expected numbers and ranges like 1,3-6,9") from None
        if not 1 <= low <= high <= len(tests):
            raise Fatal(f"-n {numbers}: {part} is not within the suite's tests 1-{len(tests)}")
        chosen.update(range(low, high + 1))
    by_id = {test.id: test.number for test in tests}
    wanted = [name.strip() for name in (ids or "").split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_id]
    if unknown:
        raise Fatal(f"--ids: no such test: {', '.join(unknown)}")
    chosen.update(by_id[name] for name in wanted)
    return [test for test in tests if test.number in chosen]


def number_ranges(tests: list[Test]) -> str:
    """The tests' numbers as cwltest's -n takes them: 1-6,9."""
    spans: list[list[int]] = []
    for test in tests:
        if spans and spans[-1][1] == test.number - 1:
            spans[-1][1] = test.number
        else:
            spans.append([test.number, test.number])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in spans)


def selection_text(options: argparse.Namespace) -> str | None:
    parts = [f"-n {options.numbers}" if options.numbers else "", f"--ids {options.ids}" if options.ids else ""]
    return " ".join(part for part in parts if part) or None


def runner_env(runner: Runner, scratch: Path, tmp: Path) -> dict[str, str]:
    """cwltest's environment, which each test's runner inherits: no ``RAY_ADDRESS``, a private
    ``TOILRAY_HOME`` (the warm instance's, never a user's own), temporary files (cwltest's
    output directories, the runners' job stores) where the script removes them, and the Docker
    API socket that toilray would choose as ``DOCKER_HOST`` (cwltool's docker mode reads it)."""
    # Short: Ray's socket paths under scratch/ray must fit in 107 bytes.
    env = base_env(scratch / "ray")
    env.update(
        TMPDIR=str(tmp),
        TOILRAY_HOME=str(scratch / "toilray-home"),
        # As if the runner's virtualenv were activated: a runner may start helpers by name.
        PATH=f"{runner.executable.parent}{os.pathsep}{env.get('PATH', '')}",
    )
    if not runner.warm:
        env["TOILRAY_EMBEDDED_RAY"] = "1"  # each run its own Ray, none left running for the next
    docker_host = container_engine.docker_host()
    if docker_host is not None:
        env["DOCKER_HOST"] = docker_host
    return env


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else "(no output)"


def probe(runner: Runner, env: dict[str, str]) -> tuple[str | None, str]:
    """The runner's version, or None and why it cannot be run."""
    if not runner.executable.exists():
        return None, f"{runner.executable} does not exist"
    python = runner.executable.parent / "python"
    steps = [
        [str(runner.executable), "--version"],
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({runner.package!r}))"],
    ]
    outputs = []
    for step in steps:
        try:
            proc = subprocess.run(
                step, capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`{shlex.join(step)}` could not run: {exc}"
        if proc.returncode != 0:
            return None, f"`{shlex.join(step)}` exited {proc.returncode}: {_last_line(proc.stderr or proc.stdout)}"
        outputs.append(_last_line(proc.stdout))
    version = outputs[-1]
    if runner.name == "toilray":
        version += f" ({machine.toilray_revision()})"
    return version, ""


def cwltest_command(runner: Runner, chosen: list[Test] | None, options: argparse.Namespace, junit: Path) -> list[str]:
    """cwltest's arguments (after ``cwltest``), run from the suite's directory."""
    argv = ["--test", TESTS_FILE, "--tool", str(runner.executable), f"-j{options.jobs}", f"--junit-xml={junit}"]
    if chosen is not None:
        # By number even for --ids: cwltest's -s cannot pick the suite's first test (index 0 reads as "not found").
        argv += ["-n", number_ranges(chosen)]
    if options.timeout is not None:
        argv += ["--timeout", str(options.timeout)]
    return [*argv, "--", "--no-container"] if options.no_container else argv


def run_cwltest(argv: list[str], runner: Runner, suite: Path, env: dict[str, str], logfile: Path) -> tuple[int, float]:
    """cwltest's exit code and wall time; its output goes to ``logfile``, its progress to the log."""
    with open(logfile, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cwltest", *argv],
            cwd=suite,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                if line.startswith("Test ["):
                    log(f"{runner.name}: {line.split(': ', 1)[0]}")
            proc.wait()
        finally:
            # Also after a normal exit: what cwltest's runners left in its session (the children of a
            # runner it killed on a timeout), and, after Ctrl-C or SIGTERM, cwltest itself.
            kill_tree(proc.pid)
            proc.wait()
    return proc.returncode, time.perf_counter() - started


def tally(junit: Path, chosen: list[Test], suite_tests: list[Test]) -> dict[str, Any]:
    """Counts, times, ids and per-tag results from cwltest's JUnit report of ``chosen``."""
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    if len(cases) != len(chosen):
        raise ValueError(f"cwltest reported {len(cases)} results for {len(chosen)} tests")
    tests: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, int]] = {}
    for position, (case, test) in enumerate(zip(cases, chosen, strict=True)):
        # cwltest names the k-th result after the suite's k-th test (it indexes the whole suite by the
        # result's position), which is the test run only for a run of the whole suite; the results come
        # in the order of the tests run, so the position names the test.
        if case.get("file") not in (test.id, suite_tests[position].id):
            raise ValueError(f"cwltest's result {position + 1} is for {case.get('file')}, not for {test.id}")
        if case.find("failure") is not None or case.find("error") is not None:
            status = "failed"
        elif case.find("skipped") is not None:
            status = "unsupported"
        else:
            status = "passed"
        tests[test.id] = {"status": status, "time_s": float(case.get("time") or 0.0)}
        for tag in test.tags:
            counts = tags.setdefault(tag, {"passed": 0, "total": 0})
            counts["total"] += 1
            counts["passed"] += status == "passed"
    statuses = [result["status"] for result in tests.values()]
    return {
        "passed": statuses.count("passed"),
        "failed": statuses.count("failed"),
        "unsupported": statuses.count("unsupported"),
        "total": len(tests),
        "summed_time_s": round(sum(result["time_s"] for result in tests.values()), 3),
        "failed_ids": [test_id for test_id, result in tests.items() if result["status"] == "failed"],
        "unsupported_ids": [test_id for test_id, result in tests.items() if result["status"] == "unsupported"],
        "tags": tags,
        "tests": tests,
    }


def measure(
    runner: Runner,
    suite: Path,
    chosen: list[Test],
    suite_tests: list[Test],
    options: argparse.Namespace,
    scratch: Path,
) -> dict[str, Any]:
    """One runner's entry of the JSON; ``error`` (not None) says why it was not measured."""
    entry: dict[str, Any] = {"name": runner.name, "executable": str(runner.executable), "error": None}
    directory = scratch / runner.name
    tmp = directory / "tmp"
    tmp.mkdir(parents=True)
    env = runner_env(runner, scratch, tmp)
    runner_version, why = probe(runner, env)
    if runner_version is None:
        entry["error"] = f"not available: {why}"
        return entry
    entry["version"] = runner_version
    whole = len(chosen) == len(suite_tests)
    argv = cwltest_command(runner, None if whole else chosen, options, directory / "junit.xml")
    entry["command"] = shlex.join(["cwltest", *argv])
    local = LocalRay(str(runner.executable.parent / "python"), Path(env["TOILRAY_HOME"]), env, log)
    try:
        with local.running() if runner.warm else contextlib.nullcontext():
            if runner.warm and local.error is not None:
                entry["error"] = f"the local Ray instance could not be started: {local.error.splitlines()[0]}"
                return entry
            log(f"{runner.name}: cwltest, {len(chosen)} test(s), {options.jobs} at a time")
            exit_code, wall_s = run_cwltest(argv, runner, suite, env, directory / "cwltest.log")
            entry["warm_local_ray"] = runner.warm and local.alive()
            if runner.warm and not entry["warm_local_ray"]:
                entry["note"] = "the local Ray instance was gone by the end: later tests may have started Ray"
    finally:
        if not options.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    junit = directory / "junit.xml"
    if exit_code not in (0, 1) or not junit.exists():
        log_tail = _last_line((directory / "cwltest.log").read_text(errors="replace"))
        entry["error"] = f"cwltest exited {exit_code} without a JUnit report: {log_tail}"
        return entry
    try:
        entry.update(tally(junit, chosen, suite_tests))
    except (ET.ParseError, ValueError) as exc:
        entry["error"] = f"cwltest's JUnit report does not add up: {exc}"
        return entry
    entry.update(cwltest_exit_code=exit_code, wall_s=round(wall_s, 3))
    return entry


def run(options: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    suite = find_suite(options.suite)
    suite_tests = load_tests(suite)
    chosen = choose(suite_tests, options.numbers, options.ids)
    started = datetime.datetime.now(datetime.UTC)
    data: dict[str, Any] = {
        "suite": str(suite),
        "suite_tests": len(suite_tests),
        "selection": None if len(chosen) == len(suite_tests) else selection_text(options),
        "selected": len(chosen),
        "jobs": options.jobs,
        "containers": not options.no_container,
        "timeout_s": options.timeout,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(argv),
        "cwltest_version": version("cwltest"),
        "machine": machine.describe(),
        "runners": [],
    }
    # Short: the Ray sessions of the warm instance live under it (socket paths must fit in 107 bytes).
    scratch = Path(tempfile.mkdtemp(prefix="cwlc-"))
    log(f"suite {suite}: {len(chosen)} of {len(suite_tests)} tests; scratch directory {scratch}")
    try:
        for name in options.runner:
            try:
                entry = measure(RUNNERS[name], suite, chosen, suite_tests, options, scratch)
            except Exception as exc:
                # Recorded like a runner that cannot run, so the other runners still get measured.
                entry = {"name": name, "error": f"the script failed: {type(exc).__name__}: {exc}"}
            if entry["error"] is not None:
                log(f"{name}: {entry['error']}")
            data["runners"].append(entry)
    finally:
        if options.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return data


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        if options.no_run:
            if not options.output.exists():
                raise Fatal(f"--no-run: {options.output} does not exist")
            data = json.loads(options.output.read_text())
        else:
            data = run(options, argv)
            options.output.parent.mkdir(parents=True, exist_ok=True)
            options.output.write_text(json.dumps(data, indent=2) + "\n")
            log(f"wrote {options.output}")
    except Fatal as exc:
        print(f"cwl_conformance.py: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(cwl_section.summary(data)))
    if options.write_results:
        page = options.results.read_text() if options.results.exists() else report.render([], [], [], False)
        options.results.write_text(report.splice(page, cwl_section.section(data)))
        log(f"updated the '{cwl_section.TITLE}' section of {options.results}")
    return 0 if any(runner["error"] is None for runner in data["runners"]) else 1
