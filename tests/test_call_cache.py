"""The call cache (toilray/callCache.py): results kept across runs, job stores and machines.

One pipeline (tests/workflows/cached_pipeline.py: a root that makes three steps) is run again
and again against one cache, each run with a new job store, and what ran is counted from the
files its steps leave behind.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import run_script
from cwltest.compare import CompareFail, compare
from test_cwl import CONFORMANCE, conformance_tests, needs_podman, run_cwl

from toilray.callCache import CallCache

WORKFLOWS = Path(__file__).parent / "workflows"
CWL_WORKFLOWS = WORKFLOWS / "cwl"


def _executions(counts: Path) -> Counter[str]:
    return Counter(name.rsplit("-", 1)[0] for name in os.listdir(counts))


class Pipeline:
    def __init__(self, tmp_path: Path, env: dict[str, str], cache: str, extra: list[str] | None = None) -> None:
        self.script = tmp_path / "cached_pipeline.py"
        self.script.write_text((WORKFLOWS / "cached_pipeline.py").read_text())
        self.input = tmp_path / "input.txt"
        self.input.write_text("alpha beta gamma\n")
        self.counts = tmp_path / "counts"
        self.counts.mkdir()
        self.env = {**env, "PIPELINE_COUNTS": str(self.counts)}
        self.cache = cache
        self.extra = extra or []
        self.runs = 0
        self.tmp_path = tmp_path

    def run(self, store: str | None = None) -> tuple[str, Counter[str], str]:
        """Run once with a new job store; the result, what ran, and the leader's log."""
        self.runs += 1
        before = _executions(self.counts)
        store = store or f"file:{self.tmp_path / f'store{self.runs}'}"
        done = run_script(self.script, store, "--input", str(self.input), "--callCache", self.cache,
                          "--setEnv", f"PIPELINE_COUNTS={self.counts}", *self.extra, env=self.env)
        assert done.returncode == 0, done.stderr[-3000:]
        result = re.search(r"^RESULT (.*)$", done.stdout, re.M)
        assert result is not None, done.stdout
        return result.group(1), _executions(self.counts) - before, done.stderr


def _finished_line(log: str) -> str:
    found = re.search(r"Workflow finished: .*", log)
    assert found is not None, log[-2000:]
    return found.group(0)


def _flip_last_byte(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_second_run_runs_nothing_edits_and_input_changes_rerun_what_depends_on_them(
        tmp_path: Path, script_env: dict[str, str]) -> None:
    cache_dir = tmp_path / "cache"
    pipeline = Pipeline(tmp_path, script_env, str(cache_dir))
    first, ran, log = pipeline.run()
    assert first == "3 words, first ALPHA"
    assert ran == Counter(pipeline=1, step1=1, step2=1, step3=1)
    assert "(0 taken from the call cache, 4 not found in it)" in _finished_line(log)

    # A second run, with another job store: nothing runs, the same value comes back.
    again, ran, log = pipeline.run()
    assert again == first
    assert ran == Counter()
    assert "0 job(s) run (4 taken from the call cache, 0 not found in it)" in _finished_line(log)

    # A flipped byte in step3's entry and in the blob of step1's output file: each is reported
    # once, that job runs again, and the rest still comes from the cache (step2's input is
    # step1's new output file: a new ID, the same content).
    cache = CallCache(f"file:{cache_dir}", create=False)
    entries = {info.name: info for info in cache.entries()}
    root = cache_dir / "toilray-call-cache-v1"
    _flip_last_byte(root / "entries" / entries["step3"].key)
    step1_blobs = set(cache.blob_sizes()) - {b for name, info in entries.items() if name != "step1"
                                             for b in _blobs_of(cache, info.key)}
    assert len(step1_blobs) == 1
    _flip_last_byte(root / "blobs" / step1_blobs.pop())
    repaired, ran, log = pipeline.run()
    assert repaired == first
    assert ran == Counter(step1=1, step3=1)
    assert len(re.findall(r"Call cache entry \w+ in .* is unusable", log)) == 2, log[-3000:]
    _, ran, log = pipeline.run()
    assert ran == Counter() and "unusable" not in log

    # Editing step 2 (its result changes) reruns step 2 and step 3 only.
    pipeline.script.write_text(pipeline.script.read_text().replace("return len(words)", "return 10 * len(words)"))
    edited, ran, _ = pipeline.run()
    assert edited == "30 words, first ALPHA"
    assert ran == Counter(step2=1, step3=1)

    # New content under the same path and modification time: everything that reads it reruns.
    stat = pipeline.input.stat()
    pipeline.input.write_text("delta beta gamma\n")
    os.utime(pipeline.input, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed, ran, _ = pipeline.run()
    assert changed == "30 words, first DELTA"
    assert ran == Counter(pipeline=1, step1=1, step3=1, step2=1)

    listing = _cli("cache", "list", str(cache_dir))
    assert "step3" in listing and "pipeline" in listing and re.search(r"total: \d+ entries", listing)
    assert "pruned" in _cli("cache", "prune", str(cache_dir), "--max-size", "0")
    assert cache.blob_sizes() == {} and list(cache.entries()) == []
    assert "Deleted" in _cli("cache", "clear", str(cache_dir))
    assert not root.exists()


def _blobs_of(cache: CallCache, key: str) -> set[str]:
    return {f.digest for f in cache.entry_files(key).values()}


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "toilray", *args], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_an_object_store_cache_is_shared_by_a_file_job_store_and_an_object_job_store(
        kind: str, tmp_path: Path, script_env: dict[str, str], object_env: dict[str, str]) -> None:
    set_env = [arg for name, value in object_env.items() for arg in ("--setEnv", f"{name}={value}")]
    prefix = f"{kind}://toilray-tests/call-cache-{uuid.uuid4().hex[:8]}"
    pipeline = Pipeline(tmp_path, {**script_env, **object_env}, f"{prefix}/cache", [*set_env, "--stats"])
    first, ran, _ = pipeline.run(f"file:{tmp_path / 'file-store'}")
    assert ran == Counter(pipeline=1, step1=1, step2=1, step3=1)
    object_store = f"{prefix}/store"
    again, ran, log = pipeline.run(object_store)
    assert again == first and ran == Counter()
    assert "(4 taken from the call cache, 0 not found in it)" in _finished_line(log)
    env = {**os.environ, **object_env}
    assert "Call cache: 4 hit(s) (jobs taken from it, not run), 0 miss(es)" in _cli("status", object_store, env=env)
    assert "Call cache: 4 hit(s), 0 miss(es)" in _cli("stats", object_store, env=env)
    assert "4 entries" in _cli("cache", "list", f"{prefix}/cache", env=env)
    _cli("clean", object_store, env=env)
    _cli("cache", "clear", f"{prefix}/cache", env=env)


# -- CWL: cwltool's --cachedir ------------------------------------------------------------------


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_cwl_cachedir_second_run_launches_no_tool_and_a_changed_input_reruns_its_readers(
        tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    inputs = {"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}
    inputs["a"].write_text("from a\n")
    inputs["b"].write_text("from b\n")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"count_dir": str(counts),
                               **{name: {"class": "File", "path": str(path)} for name, path in inputs.items()}}))
    cache = tmp_path / "cachedir"

    def run(n: int) -> tuple[dict[str, Any], dict[str, int], str]:
        done = run_cwl("--cachedir", str(cache), "--outdir", str(tmp_path / f"out{n}"),
                       str(CWL_WORKFLOWS / "cached.cwl"), str(job), env=script_env)
        assert done.returncode == 0, done.stderr[-3000:]
        ran = {name: _lines(counts / name) for name in ("useA", "useB", "join")}
        return json.loads(done.stdout), ran, done.stderr

    first, ran, _ = run(1)
    assert ran == {"useA": 1, "useB": 1, "join": 1}
    second, ran, log = run(2)
    assert ran == {"useA": 1, "useB": 1, "join": 1}
    assert "0 job(s) run (3 taken from the call cache" in _finished_line(log)
    for name in ("fromA", "joined"):
        assert {k: second[name][k] for k in ("checksum", "size", "basename")} == \
            {k: first[name][k] for k in ("checksum", "size", "basename")}
        assert Path(second[name]["path"]).read_text() == Path(first[name]["path"]).read_text()
    stat = inputs["b"].stat()
    inputs["b"].write_text("from B\n")
    os.utime(inputs["b"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third, ran, _ = run(3)
    assert ran == {"useA": 1, "useB": 2, "join": 2}
    assert Path(third["joined"]["path"]).read_text() == "from B\nuseB\njoin\n"


CONFORMANCE_TWICE = ["wf_wc_parseInt", "nested_workflow", pytest.param("stdout_redirect_docker", marks=needs_podman)]


@pytest.mark.parametrize("test_id", CONFORMANCE_TWICE)
def test_cwl_conformance_workflow_twice_with_cachedir(test_id: str, tmp_path: Path,
                                                      script_env: dict[str, str]) -> None:
    test = conformance_tests()[test_id]
    for n in (1, 2):
        args = ["--cachedir", str(tmp_path / "cachedir"), "--outdir", str(tmp_path / f"out{n}"), test["tool"]]
        if test.get("job"):
            args.append(test["job"])
        done = run_cwl(*args, env=script_env, cwd=CONFORMANCE, containers=test_id == "stdout_redirect_docker")
        assert done.returncode == 0, done.stderr[-3000:]
        try:
            compare(test["output"], json.loads(done.stdout))
        except CompareFail as exc:
            pytest.fail(f"{test_id}, run {n}: {exc}")
        if n == 2:
            assert re.search(r"Workflow finished: 0 job\(s\) run \([1-9]\d* taken from the call cache, "
                             r"0 not found", done.stderr), done.stderr[-3000:]


# -- the key rule and the entries, without a workflow -------------------------------------------


def _function(source: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<flow>", "exec"), namespace)
    return namespace["step"]


def test_code_identity_follows_the_code_not_its_comments() -> None:
    from toilray.callCache import codeIdentity

    base = codeIdentity(_function("def step(x):\n    return x + 1\n"))
    assert codeIdentity(_function("def step(x):\n    # one more\n    return x + 1\n")) == base
    assert codeIdentity(_function("def step(x):\n    return x + 2\n")) != base
    assert codeIdentity(_function("def step(x):\n    return [y + 1 for y in x]\n")) != \
        codeIdentity(_function("def step(x):\n    return [y + 2 for y in x]\n"))


def test_keys_count_files_by_content_and_ignore_dict_order(tmp_path: Path) -> None:
    from toilray.callCache import CallIdentity
    from toilray.fileStores import FileID
    from toilray.jobStores.jobStore import JobStore

    store = JobStore(f"file:{tmp_path / 'store'}")
    store.initialize()
    ids = []
    for name, text in (("one.txt", "same"), ("two.txt", "same"), ("three.txt", "other")):
        (tmp_path / name).write_text(text)
        ids.append(FileID(store.write_file(str(tmp_path / name)), 4))
    cache = CallCache(f"file:{tmp_path / 'cache'}")

    def key(arguments: Any) -> str:
        return cache.key(CallIdentity("python", "code", arguments), store)

    assert key({"a": 1, "b": ids[0]}) == key({"b": ids[1], "a": 1})
    assert key({"a": 1, "b": ids[0]}) != key({"a": 1, "b": ids[2]})
    assert key([str(ids[0])]) == key([str(ids[1])])  # a plain string that is a file's ID counts as the file


def test_concurrent_writers_converge_and_a_partial_entry_is_a_miss_reported_once(tmp_path: Path) -> None:
    import threading

    from toilray.jobStores.jobStore import JobStore
    from toilray.protocol import CommitRecord

    store = JobStore(f"file:{tmp_path / 'store'}")
    store.initialize()
    (tmp_path / "out.txt").write_text("result file")
    file_id = store.write_file(str(tmp_path / "out.txt"))
    record = CommitRecord("a" * 32, pickle.dumps(file_id), frozenset(), [], (), (), [], [])
    cache = CallCache(f"file:{tmp_path / 'cache'}")
    key = "f" * 64
    won: list[bool] = []
    writers = [threading.Thread(target=lambda: won.append(cache.store(key, "job", record, store))) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert sorted(won) == [False, False, False, True]
    other = JobStore(f"file:{tmp_path / 'other'}")
    other.initialize()
    reports: list[str] = []
    found = cache.lookup(key, other, reports.append)
    assert found is not None and pickle.loads(found.result) == file_id and reports == []
    with other.open_file(file_id) as restored:
        assert restored.read() == b"result file"
    entry = tmp_path / "cache" / "toilray-call-cache-v1" / "entries" / key
    entry.write_bytes(entry.read_bytes()[:-10])
    assert cache.lookup(key, other, reports.append) is None
    assert cache.lookup(key, other, reports.append) is None
    assert len(reports) == 1 and "unusable" in reports[0]


def test_a_mistyped_call_cache_locator_is_refused_by_name(tmp_path: Path) -> None:
    from toilray.config import Config
    from toilray.exceptions import BadOptionError
    from toilray.job import Job

    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.callCache = "s4://bucket/cache"
    with pytest.raises(BadOptionError, match=r"--callCache s4://bucket/cache: not a path"):
        Config.from_options(options)
