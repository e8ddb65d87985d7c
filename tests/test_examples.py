"""Run every script in examples/ as a user would, and check what the user sees.

Each example is started as its own process (``python examples/X.py JOBSTORE ...``) against the
session's shared Ray. The assertions are on its exit status, what it prints, the files it
leaves behind and the job store it keeps or removes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, run_script

from toilray.lib.conversions import human2bytes


def run_example(script: str, *args: str, env: dict[str, str], cwd: Path | None = None,
                expect_success: bool = True) -> subprocess.CompletedProcess[str]:
    result = run_script(EXAMPLES / script, *args, env=env, cwd=cwd)
    if expect_success:
        assert result.returncode == 0, (
            f"{script} exited with {result.returncode}\n--- stdout ---\n{result.stdout}"
            f"\n--- stderr (tail) ---\n{result.stderr[-6000:]}"
        )
    else:
        assert result.returncode != 0, f"{script} was expected to fail but succeeded:\n{result.stdout}"
    return result


def printed(result: subprocess.CompletedProcess[str], label: str) -> Any:
    """The JSON value the script printed after ``label: ``."""
    for line in result.stdout.splitlines():
        if line.startswith(f"{label}: "):
            return json.loads(line[len(label) + 2 :])
    raise AssertionError(f"no '{label}:' line in the output:\n{result.stdout}")


def printed_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document the script printed as its last line."""
    lines = result.stdout.strip().splitlines()
    assert lines, f"nothing printed; stderr:\n{result.stderr[-4000:]}"
    return json.loads(lines[-1])


def store_exists(locator: str) -> bool:
    return os.path.exists(locator.removeprefix("file:"))


# -- hello world ---------------------------------------------------------------------------


def test_hello_function_takes_requirements_from_defaults(script_env: dict[str, str], tmp_path: Path) -> None:
    store = f"file:{tmp_path / 'store'}"
    result = run_example("hello_function.py", store, env=script_env)
    lines = result.stdout.splitlines()
    assert lines[0] == "Hello, world!, here's a message: You did it!"
    # Nothing was passed to wrapFn: the 1G/1/1G come from helloWorld's keyword defaults, not
    # from the workflow defaults (2Gi memory and disk).
    gigabyte = human2bytes("1G")
    assert lines[1] == f"requirements: memory={gigabyte} cores=1 disk={gigabyte}"
    assert not store_exists(store), "clean='always' should remove the job store"


def test_hello_class_and_restart_of_missing_store(script_env: dict[str, str], tmp_path: Path) -> None:
    store = f"file:{tmp_path / 'store'}"
    result = run_example("hello_class.py", store, "--message", "Woot!", env=script_env)
    assert result.stdout.strip() == "Hello, world!, here's a message: Woot!"
    # job.log reaches the leader's log.
    assert "Hello world, I have a message: Woot!" in result.stderr
    assert not store_exists(store), "the job store should be removed after success by default"

    restarted = run_example("hello_class.py", store, "--restart", env=script_env, expect_success=False)
    assert "does not exist" in restarted.stderr
    assert restarted.stdout == ""


# -- graph shapes ------------------------------------------------------------------------------


def test_dag_children_follow_ons_and_two_parents(script_env: dict[str, str], tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_example("dag.py", f"file:{tmp_path / 'store'}", "--markDir", str(marks), env=script_env)

    first, second, third, last, grandchild = printed(result, "tree order")
    assert [r["job"] for r in (first, second, third, last, grandchild)] == [
        "first", "second", "third", "last", "grandchild"]
    assert first["after"] == []
    # The two children run after their parent, in either order relative to each other.
    assert "first" in second["after"] and set(second["after"]) <= {"first", "third"}
    assert "first" in third["after"] and set(third["after"]) <= {"first", "second", "grandchild"}
    assert "second" in grandchild["after"]
    # The follow-on waits for the children and for their own successors.
    assert last["after"] == ["first", "grandchild", "second", "third"]
    assert printed(result, "tree runs") == {"first": 1, "second": 1, "third": 1, "grandchild": 1, "last": 1}

    first, second, third, last = printed(result, "dag order")
    assert [r["job"] for r in (first, second, third, last)] == ["first", "second", "third", "last"]
    assert first["after"] == []
    assert "first" in second["after"]
    assert {"first", "via1", "via2", "via3"} <= set(third["after"])
    # "last" has two parents: it runs after both, and exactly once.
    assert last["after"] == ["first", "second", "third", "via1", "via2", "via3"]
    assert printed(result, "dag runs") == dict.fromkeys(["first", "second", "via1", "via2", "via3", "third", "last"], 1)


def test_binary_strings_dynamic_jobs_and_promise_recursion(script_env: dict[str, str], tmp_path: Path) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    result = run_example("binary_strings.py", f"file:{tmp_path / 'store'}", "--countDir", str(counts),
                         env=script_env)
    expected = ["".join(bits) for bits in itertools.product("01", repeat=5)]
    # The promise recursion keeps the order of the halves, so the list comes out sorted.
    assert printed_json(result) == expected
    logged = re.findall(r"Binary string: ([01]+)", result.stderr)
    assert sorted(logged) == expected
    assert len(os.listdir(counts)) == 2 ** (5 + 1) - 1


def test_promises_chain_index_slice_and_nesting(script_env: dict[str, str], tmp_path: Path) -> None:
    result = run_example("promises.py", f"file:{tmp_path / 'store'}", env=script_env)
    values = printed_json(result)
    assert values["chain"] == [
        {"got": 1, "returned": 2},
        {"got": 2, "returned": 3},
        {"got": 3, "returned": 4},
    ]
    assert values["index"] == 2
    assert values["path"] == [{"a": 42}, 42]
    assert values["slice"] == [7, 8]
    assert values["nested"] == {
        "args": [[0, 6, 9]],
        "kwargs": {"mapping": {"tuple": [0, 1, 2, 3], "a": 42, "deep": [{"x": [6, 7]}]}},
    }
    for i in (1, 2, 3):
        assert f"i is: {i}" in result.stderr


def test_promise_index_reaches_failing_job(script_env: dict[str, str], tmp_path: Path) -> None:
    store = f"file:{tmp_path / 'store'}"
    result = run_example("promises.py", store, "--raiseWrap", "--retryCount", "0", env=script_env,
                         expect_success=False)
    assert "RuntimeError: 2" in result.stderr
    assert store_exists(store), "a failed workflow keeps its job store for --restart"


def test_promised_requirements(script_env: dict[str, str], tmp_path: Path) -> None:
    result = run_example("promised_requirements.py", f"file:{tmp_path / 'store'}", "--copies", "3",
                         env=script_env)
    size = (EXAMPLES / "promised_requirements.py").stat().st_size
    values = printed_json(result)
    assert values["single"] == {"disk": size, "fileSize": size}
    assert values["lambda"] == {"disk": 3 * size, "fileSize": size}
    assert values["function"] == {"disk": 3 * size, "fileSize": size}


# -- files ----------------------------------------------------------------------------------


def test_local_and_global_files(script_env: dict[str, str], tmp_path: Path) -> None:
    result = run_example("files.py", f"file:{tmp_path / 'store'}", env=script_env)
    values = printed_json(result)

    local = values["local"]
    assert local["tempDirExists"] and local["tempDirStable"] and local["tempFileExists"]
    assert not local["tempDirExistsAfter"] and not local["tempFileExistsAfter"]

    writer = values["global"]["writer"]
    assert writer["readDefault"] == "What a tangled web we weave"
    assert writer["readUserPath"] == "Out brief candle"
    assert writer["userPathReturned"]
    assert writer["streamIsBytes"] and writer["streamed"] == "Out brief candle"
    assert writer["streamedText"] == "Ünïcödé candle, ∞ ✓"
    tangled_size = len(b"What a tangled web we weave")
    assert writer["fileIDSize"] == tangled_size
    assert writer["globalFileSize"] == tangled_size
    assert writer["streamSize"] == len(b"Out brief candle")
    assert writer["textSize"] == len("Ünïcödé candle, ∞ ✓".encode())
    assert writer["executableCopy"] and not writer["plainCopyExecutable"]

    successor = values["global"]["successor"]
    assert successor["deletedReadable"] is False
    assert successor["cleanupContent"] == "Out brief candle"
    assert successor["text"] == "Ünïcödé candle, ∞ ✓"
    assert successor["executableCopy"]

    # After the writer and all its successors: the cleanup=True files are gone, the other stays.
    assert values["afterCleanup"] == {"cleanupReadable": False, "textReadable": False, "executableCopy": True}


def test_staging_relative_paths(script_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("Hello, ")
    result = run_example("staging.py", f"file:{tmp_path / 'store'}", "in.txt", "out.txt", env=script_env,
                         cwd=tmp_path)
    assert result.stdout.strip() == "exported: out.txt"
    assert (tmp_path / "out.txt").read_text() == "Hello, World!"
    assert (tmp_path / "in.txt").read_text() == "Hello, "


def test_staging_file_urls(script_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "input with space.txt"
    source.write_text("Grüß dich, ")
    target = tmp_path / "out.txt"
    run_example("staging.py", f"file:{tmp_path / 'store'}", f"file://{source}", f"file://{target}",
                env=script_env)
    assert target.read_text(encoding="utf-8") == "Grüß dich, World!"


# -- encapsulation ------------------------------------------------------------------------------


def check_b_after_whole_subgraph(values: dict[str, Any]) -> None:
    encapsulated = values["encapsulated"]
    assert encapsulated["rv"]["job"] == "A"
    assert encapsulated["B"]["after"] == ["A", "Achild", "AfollowOn"]
    # The encapsulated job's rv() is the inner A's return value.
    assert encapsulated["B"]["received"] == encapsulated["rv"]
    assert values["parent"]["B"]["after"] == ["A", "Achild", "AfollowOn"]


def test_encapsulate(script_env: dict[str, str], tmp_path: Path) -> None:
    result = run_example("encapsulate.py", f"file:{tmp_path / 'store'}", env=script_env)
    check_b_after_whole_subgraph(printed_json(result))


def test_start_of_encapsulated_root_returns_inner_value(script_env: dict[str, str], tmp_path: Path) -> None:
    result = run_example("encapsulate.py", f"file:{tmp_path / 'store'}", "--encapsulateRoot", env=script_env)
    check_b_after_whole_subgraph(printed_json(result))


# -- display names ----------------------------------------------------------------------------


def test_discoverfiles_display_names_and_stats_keeps_store(script_env: dict[str, str], tmp_path: Path) -> None:
    directories = []
    for name, files in (("sys", ["a", "b"]), ("home", ["c"]), ("tmp", ["d", "e", "f"])):
        directory = tmp_path / name
        directory.mkdir()
        for file in files:
            (directory / file).write_text(file)
        directories.append(str(directory))
    store = f"file:{tmp_path / 'store'}"
    result = run_example("discoverfiles.py", store, "--stats", "--paths", *directories, env=script_env)
    listings = printed_json(result)
    assert [entry["displayName"] for entry in listings] == ["sysFiles", "userFiles", "discoverFiles"]
    assert [entry["files"] for entry in listings] == [["a", "b"], ["c"], ["d", "e", "f"]]
    # The script sets clean='always', but --stats keeps the store for 'toil stats'.
    assert store_exists(store)


# -- merge sort, failure and restart -----------------------------------------------------------


def executions(count_dir: Path) -> Counter[tuple[str, str]]:
    """(kind, path) of every job execution recorded by sort.py's --countDir."""
    runs: Counter[tuple[str, str]] = Counter()
    for name in os.listdir(count_dir):
        kind, path, _ = name.split("-")
        runs[(kind, path.replace("_", "/"))] += 1
    return runs


def test_sort_fails_then_restarts_without_rerunning_finished_jobs(
    script_env: dict[str, str], tmp_path: Path
) -> None:
    store = f"file:{tmp_path / 'store'}"
    counts = tmp_path / "counts"
    counts.mkdir()
    fault = tmp_path / "fault"
    fault.write_text("root/0/up\n")
    # 20000 lines of 10 bytes split at 30000 bytes: three levels, eight sorted chunks.
    common = ["--numLines", "20000", "--lineLength", "10", "--N", "30000",
              "--faultFile", str(fault), "--countDir", str(counts)]

    failed = run_example("sort.py", store, *common, env=script_env, cwd=tmp_path, expect_success=False)
    assert "Injected fault in the merge root/0/up" in failed.stderr
    assert "---TOIL WORKER OUTPUT LOG---" in failed.stderr
    assert store_exists(store)
    assert not (tmp_path / "sortedFile.txt").exists()
    first_runs = executions(counts)
    assert first_runs[("up", "root/0/up")] == 2, "--retryCount defaults to 1: two attempts"
    assert ("up", "root/up") not in first_runs, "the final merge waits for the failed one"

    again = run_example("sort.py", store, *common, env=script_env, cwd=tmp_path, expect_success=False)
    assert "already exists" in again.stderr

    # Still faulty, with more attempts: try counts start afresh on restart.
    run_example("sort.py", store, *common, "--restart", "--retryCount", "2", env=script_env, cwd=tmp_path,
                expect_success=False)
    assert executions(counts)[("up", "root/0/up")] == 2 + 3

    fault.unlink()
    run_example("sort.py", store, *common, "--restart", env=script_env, cwd=tmp_path)
    unsorted = (tmp_path / "fileToSort.txt").read_text().splitlines()
    assert len(unsorted) == 20000
    assert (tmp_path / "sortedFile.txt").read_text().splitlines() == sorted(unsorted)
    assert not store_exists(store), "the job store is removed once the restarted workflow succeeds"

    runs = executions(counts)
    assert runs.pop(("up", "root/0/up")) == 2 + 3 + 1
    splits = [key for key in runs if key[0] == "split"]
    assert len(splits) == 7 and len([key for key in runs if key[0] == "sort"]) == 8
    # Everything else ran exactly once over the four invocations: finished jobs were not rerun.
    assert set(runs.values()) == {1}, {key: n for key, n in runs.items() if n != 1}
    assert ("up", "root/up") in runs


def test_sort_real_time_logging_reaches_leader(script_env: dict[str, str], tmp_path: Path) -> None:
    result = run_example("sort.py", f"file:{tmp_path / 'store'}", "--numLines", "500", "--lineLength", "10",
                         "--N", "100000", "--realTimeLogging", env=script_env, cwd=tmp_path)
    unsorted = (tmp_path / "fileToSort.txt").read_text().splitlines()
    assert (tmp_path / "sortedFile.txt").read_text().splitlines() == sorted(unsorted)
    assert "Starting the merge sort" in result.stderr
    assert "Sorting file:" in result.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_has_help(script: str) -> None:
    """Each example parses Toil's options and its own, and is importable without running."""
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--restart" in result.stdout and "jobStore" in result.stdout
