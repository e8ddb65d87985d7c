"""Code shipping to workers, the leader lock, URL import/export, and the job store as the only
way to stored objects."""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_script

from toilray.common import Toil
from toilray.exceptions import JobStoreLockedException, NoSuchFileException
from toilray.job import Job
from toilray.jobStores.jobStore import JobStore
from toilray.lib import urls
from toilray.protocol import CommitRecord

WORKFLOWS = Path(__file__).parent / "workflows"


def test_package_run_with_python_m_reaches_the_workers(tmp_path: Path, script_env: dict[str, str]) -> None:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "flowpkg.main", f"file:{tmp_path / 'store'}"],
                          cwd=WORKFLOWS / "pkgflow", env=script_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "RESULT PACKAGE!" in done.stdout


def test_job_function_in_a_sibling_module(tmp_path: Path, script_env: dict[str, str]) -> None:
    done = run_script(WORKFLOWS / "sibling" / "sibling_flow.py", f"file:{tmp_path / 'store'}", env=script_env,
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "RESULT 42" in done.stdout


def test_second_leader_on_the_same_store_is_refused(tmp_path: Path, ray_address: str) -> None:
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    with Toil(options):
        again = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
        again.restart = True
        (tmp_path / "store" / "workflow.json").write_text("{}")
        with pytest.raises(JobStoreLockedException, match="in use by another running leader"), Toil(again):
            pass


def _read_and_upper(job: Job, file_id: str) -> str:
    with job.fileStore.readGlobalFileStream(file_id, encoding="utf-8") as handle:
        return handle.read().upper()


def test_import_from_http_and_relative_paths_then_export(tmp_path: Path, http_root: tuple[str, Path],
                                                        ray_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base_url, served = http_root
    (served / "greeting.txt").write_text("hello over http")
    (tmp_path / "local.txt").write_text("hello from disk")
    monkeypatch.chdir(tmp_path)
    options = Job.Runner.getDefaultOptions("file:store")
    with Toil(options) as toil:
        remote = toil.importFile(f"{base_url}/greeting.txt")
        local = toil.importFile("local.txt")
        assert remote.size == len("hello over http") and local.size == len("hello from disk")
        with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
            toil.importFile(f"{base_url}/missing.txt")
        with pytest.raises(FileNotFoundError, match=r"nothere\.txt"):
            toil.importFile("nothere.txt")
        root = Job.wrapJobFn(_read_and_upper, remote)
        assert toil.start(root) == "HELLO OVER HTTP"
        toil.exportFile(local, "out/exported.txt")
    assert (tmp_path / "out" / "exported.txt").read_text() == "hello from disk"
    assert os.access(tmp_path / "out" / "exported.txt", os.W_OK)


def test_shared_files_by_import_and_by_name(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    base_url, served = http_root
    (served / "remote.txt").write_text("shared over http")
    (tmp_path / "local.txt").write_text("shared from disk")
    store = JobStore(f"file:{tmp_path / 'store'}")
    store.initialize()
    assert store.root_exists() and not store.exists()
    with pytest.raises(NoSuchFileException):
        store.read_shared("local")
    assert urls.import_url(store, str(tmp_path / "local.txt"), shared_name="local") is None
    assert urls.import_url(store, f"{base_url}/remote.txt", shared_name="remote") is None
    assert (store.read_shared("local"), store.read_shared("remote")) == (b"shared from disk", b"shared over http")
    store.write_shared("local", b"replaced")
    assert store.read_shared("local") == b"replaced"
    with pytest.raises(ValueError, match="Invalid shared file name"):
        store.write_shared("../escape", b"")
    assert store.file_ids() == []  # shared files are not global files
    file_id = urls.import_url(store, f"{base_url}/remote.txt")
    assert store.file_ids() == [file_id] and file_id.size == len("shared over http")


# -- the job store is the only door to stored objects ----------------------------------------

PACKAGE = Path(__file__).parent.parent / "toilray"


def test_only_the_job_store_touches_its_storage_back_end() -> None:
    """Outside toilray/jobStores/ (and the back ends in backends/), nothing reaches a job store's
    ``storage``/``_storage``: every stored object goes through JobStore's methods, which alone
    know the store's layout."""
    modules = [path for path in sorted(PACKAGE.rglob("*.py")) if "jobStores" not in path.relative_to(PACKAGE).parts]
    assert PACKAGE / "stats.py" in modules and PACKAGE / "cli" / "manage.py" in modules
    offenders = sorted(
        (str(path.relative_to(PACKAGE.parent)), node.lineno, node.attr)
        for path in modules
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Attribute) and node.attr in ("storage", "_storage")
    )
    assert not offenders, "use JobStore's methods instead of its storage back end:\n" + "\n".join(
        f"{path}:{line}: .{attr}" for path, line, attr in offenders)


def _record(job_id: str, value: int) -> CommitRecord:
    return CommitRecord(job_id, pickle.dumps(value), frozenset(), [], (), (), [], [], name=f"job {value}")


def test_jobs_committed_together_read_back_apart_and_a_first_commit_wins(tmp_path: Path) -> None:
    """A task's batch commits in one write (hard links of one file on a local store): each job
    reads back its own record, one committed before keeps its own, and each uncommits alone
    (and a job committed again reads back its new record, not the batch's)."""
    store = JobStore(f"file:{tmp_path / 'store'}")
    store.initialize()
    assert store.commit(_record("b" * 32, -1))
    created = store.commit_all([_record(letter * 32, value) for value, letter in enumerate("abc")])
    assert created == [True, False, True]
    assert [pickle.loads(store.result_bytes(letter * 32)) for letter in "abc"] == [0, -1, 2]
    assert store.read_commit("c" * 32) == _record("c" * 32, 2)
    store.uncommit("a" * 32)
    assert store.read_commit("a" * 32) is None and store.result_bytes("c" * 32) == pickle.dumps(2)
    assert sorted(store.committed_ids()) == ["b" * 32, "c" * 32]
    assert store.commit(_record("a" * 32, 7)) and store.read_commit("a" * 32) == _record("a" * 32, 7)
    assert os.listdir(tmp_path / "store" / "tmp") == []  # nothing staged is left behind


def test_a_batch_commits_its_jobs_once_they_ran_and_a_job_committed_meanwhile_keeps_that_commit(
        tmp_path: Path) -> None:
    """A worker's batch task (no Ray: ``run_jobs`` in a process of its own) leaves each job's
    record in the store; a job another attempt committed while the batch ran reports that
    attempt's value, and a second run of the batch runs nothing again."""
    done = subprocess.run([sys.executable, str(WORKFLOWS / "batch_commit.py"), str(tmp_path / "store"),
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "first [(True, True), (True, False), (True, False)] ['earlier', None, 6] ['earlier', None, 6]",
        "again [(True, True), (True, True), (True, True)] ['earlier', None, 6] ['earlier', None, 6]",
    ]
