"""A harness for the WDL spec conformance suite (``conformance.yaml`` + ``tests/``), ours.

For each test and each WDL version it lists, the workflow is rewritten to that version (as the
suite's own runner does: the version line; for draft-2 no ``input {}`` wrapper and ``${}``
placeholders; ``container`` spelled ``docker`` for 1.0 and draft-2), run by a runner command in
a copy of the suite, and its outputs checked: values by type, Files by md5sum or regex, and
tests marked ``fail`` must exit non-zero. Cases run concurrently. Used by
tests/test_wdl_conformance.py (toilray) and benchmarks/wdl_conformance.py (toilray and miniwdl).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUITE = Path("/work/shared/conformance/wdl")
VERSIONS = ("draft-2", "1.0", "1.1")

# Makes the command line for (workflow, inputs, results file); the results file holds
# {"outputs": {...}} (the miniwdl dialect).
Runner = Callable[[str, str, str], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    version: str
    wdl: Path
    inputs: Path
    outputs: dict[str, Any]
    fail: bool


@dataclass
class Result:
    case: Case
    passed: bool
    reason: str
    seconds: float


def _version_lines(lines: list[str], version: str) -> list[str]:
    out: list[str] = []
    replaced = False
    for line in lines:
        if not replaced and re.match(r"\s*version\s+\S+", line):
            replaced = True
            if version != "draft-2":
                out.append(f"version {version}\n")
            continue
        out.append(line)
    return out


def _drop_input_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    depth = None
    for line in lines:
        if depth is None and re.match(r"\s*input\s*\{\s*$", line):
            depth = 1
            continue
        if depth is not None:
            depth += line.count("{") - line.count("}")
            if depth <= 0:
                depth = None
                continue
        out.append(line)
    return out


def convert(text: str, version: str) -> str:
    lines = _version_lines(text.splitlines(keepends=True), version)
    if version in ("draft-2", "1.0"):
        lines = [re.sub(r"^(\s*)container(\s*:)", r"\1docker\2", line) for line in lines]
    if version == "draft-2":
        lines = [line.replace("~{", "${") for line in _drop_input_blocks(lines)]
    return "".join(lines)


def prepare(workdir: Path, versions: Sequence[str] = VERSIONS, ids: Sequence[str] | None = None) -> list[Case]:
    """Copy the suite to ``workdir`` and write each test's workflow for each of its versions."""
    shutil.copytree(SUITE, workdir, dirs_exist_ok=True)
    # The suite's own runner script, which some inputs name as a file to read.
    (workdir / "run.py").touch()
    cases = []
    for test in yaml.safe_load((SUITE / "conformance.yaml").read_text()):
        if ids is not None and test["id"] not in ids:
            continue
        folder = workdir / test["inputs"]["dir"]
        source = folder / test["inputs"]["wdl"]
        for version in test["versions"]:
            if version not in versions:
                continue
            converted = folder / f"_version_{version}_{source.stem}.wdl"
            converted.write_text(convert(source.read_text(), version))
            cases.append(Case(test["id"], version, converted, folder / test["inputs"]["json"],
                              test.get("outputs") or {}, bool(test.get("fail"))))
    return cases


def _split_args(inner: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in inner:
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += char in "[{"
        depth -= char in "]}"
        current += char
    parts.append(current.strip())
    return parts


def compare(expected: Any, actual: Any, typ: Any) -> str | None:
    """None when ``actual`` matches ``expected`` for the WDL type ``typ``; else why not."""
    if isinstance(typ, dict):
        if not isinstance(actual, dict) or set(map(str, expected)) != set(map(str, actual)):
            return f"struct {actual!r} is not {expected!r}"
        for key, member in typ.items():
            problem = compare(expected[key], actual[str(key)], member)
            if problem:
                return problem
        return None
    typ = str(typ).strip().strip('"')
    if typ.endswith("?"):
        if expected is None:
            return None if actual is None else f"{actual!r} is not null"
        typ = typ[:-1]
    match = re.fullmatch(r"(Array|Map|Pair)\[(.*)\]\+?", typ)
    if match:
        kind, args = match.group(1), _split_args(match.group(2))
        if kind == "Array":
            if not isinstance(actual, list) or len(actual) != len(expected):
                return f"array {actual!r} is not {expected!r}"
            for item_expected, item_actual in zip(expected, actual, strict=True):
                problem = compare(item_expected, item_actual, args[0])
                if problem:
                    return problem
            return None
        if kind == "Map":
            if not isinstance(actual, dict) or set(map(str, expected)) != set(map(str, actual)):
                return f"map {actual!r} is not {expected!r}"
            for key, value in expected.items():
                problem = compare(value, actual[str(key)], args[1])
                if problem:
                    return problem
            return None
        if not isinstance(actual, dict) or set(actual) != {"left", "right"}:
            return f"pair {actual!r} is not {expected!r}"
        return compare(expected["left"], actual["left"], args[0]) or compare(expected["right"], actual["right"],
                                                                               args[1])
    if typ == "File":
        if not isinstance(actual, str) or not os.path.isfile(actual):
            return f"output file {actual!r} does not exist"
        data = Path(actual).read_bytes()
        if "regex" in expected:
            if not re.search(expected["regex"], data.decode(errors="replace")):
                return f"file {actual} does not match {expected['regex']!r}"
            return None
        digest = hashlib.md5(data).hexdigest()
        return None if digest == expected["md5sum"] else f"file {actual} has md5 {digest}, not {expected['md5sum']}"
    kinds = {"Int": int, "Float": (int, float), "Boolean": bool, "String": str}
    wanted = kinds.get(typ)
    if wanted is None:
        return f"unknown expected type {typ}"
    if typ == "Int" and isinstance(actual, bool):
        return f"{actual!r} is not an Int"
    if not isinstance(actual, wanted) or actual != expected:
        return f"{actual!r} is not {expected!r} ({typ})"
    return None


def check(case: Case, status: int, results_file: Path) -> str | None:
    if case.fail:
        return None if status != 0 else "succeeded, but the test expects a failure"
    if status != 0:
        return f"exit status {status}"
    try:
        outputs = json.loads(results_file.read_text())["outputs"]
    except (OSError, ValueError, KeyError) as exc:
        return f"no results: {exc}"
    if set(outputs) != set(case.outputs):
        return f"outputs {sorted(outputs)}, expected {sorted(case.outputs)}"
    for name, spec in case.outputs.items():
        problem = compare(spec.get("value"), outputs[name], spec["type"])
        if problem:
            return f"{name}: {problem}"
    return None


def run_case(case: Case, runner: Runner, suite_dir: Path, env: dict[str, str], timeout: float) -> Result:
    results_file = suite_dir / f"results-{uuid.uuid4().hex}.json"
    command = runner(str(case.wdl), str(case.inputs), str(results_file))
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=suite_dir, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        status, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired:
        return Result(case, False, f"timed out after {timeout:.0f} s", time.monotonic() - started)
    seconds = time.monotonic() - started
    problem = check(case, status, results_file)
    if problem and status != 0 and not case.fail:
        tail = [line for line in stderr.splitlines() if line.strip()][-3:]
        problem += ": " + " | ".join(tail)
    return Result(case, problem is None, problem or "", seconds)


def run_suite(cases: Sequence[Case], runner: Runner, suite_dir: Path, env: dict[str, str], jobs: int,
              timeout: float = 600) -> list[Result]:
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda case: run_case(case, runner, suite_dir, env, timeout), cases))


def summary(results: Sequence[Result]) -> dict[str, tuple[int, int]]:
    """Per version: (passed, run)."""
    counts: dict[str, tuple[int, int]] = {}
    for version in VERSIONS:
        mine = [result for result in results if result.case.version == version]
        counts[version] = (sum(result.passed for result in mine), len(mine))
    return counts
