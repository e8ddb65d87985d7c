"""Toil's module paths, imported as pipelines import them (``toil`` -> ``toilray``), behaving as
Toil's source documents; and the Job-subclass idioms of real pipelines, run on a real Ray."""

from __future__ import annotations

import argparse
import logging
import os
import stat
import subprocess
import sys
import threading
import urllib.error
from pathlib import Path
from typing import Any

import pytest

import toilray
from toilray.batchSystems import DeadlockException
from toilray.batchSystems.abstractBatchSystem import AbstractBatchSystem, BatchJobExitReason
from toilray.batchSystems.registry import add_batch_system_factory, get_batch_system, get_batch_systems
from toilray.batchSystems.singleMachine import SingleMachineBatchSystem
from toilray.common import Toil, ToilContextManagerException
from toilray.exceptions import FailedJobsException
from toilray.fileStores import FileID
from toilray.fileStores.abstractFileStore import AbstractFileStore
from toilray.job import Job, JobDescription, Requirer, ServiceHostJob, TemporaryID
from toilray.jobStores.abstractJobStore import AbstractJobStore, NoSuchFileException
from toilray.jobStores.jobStore import JobStore
from toilray.lib import bioio, humanize
from toilray.lib.accelerators import count_nvidia_gpus
from toilray.lib.conversions import (
    b_to_mib,
    bytes2human,
    convert_units,
    hms_duration_to_seconds,
    human2bytes,
    modify_url,
    opt_strtobool,
    seconds_to_dhms,
    strtobool,
)
from toilray.lib.io import AtomicFileCreate, atomic_copy, mkdtemp, robust_rmtree
from toilray.lib.memoize import memoize, parse_iso_utc, sync_memoize
from toilray.lib.retry import ErrorCondition, old_retry, retry
from toilray.lib.threading import cpu_count
from toilray.statsAndLogging import add_logging_options, logger, set_logging_from_options, toil_logger

# -- plain library functions (no Ray) ------------------------------------------------------------


def test_conversions_follow_toil() -> None:
    assert human2bytes("1K") == 1000  # Toil 9: K is decimal, Ki binary
    assert human2bytes("1Ki") == 1024
    assert human2bytes("1024 Mib") == 2**30
    assert human2bytes("2GB") == 2 * 10**9
    assert bytes2human(1024) == "1.0 Ki"
    assert bytes2human(3 * 2**30) == "3.0 Gi"
    assert bytes2human(512) == "512.0 b"
    assert bytes2human(0) == "0 b"
    assert convert_units(1, "Gi", "Mi") == 1024
    assert convert_units(2, "G") == 2 * 10**9
    with pytest.raises(RuntimeError, match="parsecs not a valid unit"):
        convert_units(1, "parsecs")
    assert b_to_mib(3 * 2**20) == 3
    assert hms_duration_to_seconds("01:02:03") == 3723
    assert seconds_to_dhms(90061) == "01-01:01:01"
    assert strtobool("Yes") is True and strtobool("off") is False
    assert opt_strtobool(None) is None
    with pytest.raises(ValueError):
        strtobool("maybe")
    assert modify_url("https://h/p?a=1&token=x", ["token"]) == "https://h/p?a=1"


def test_deprecated_humanize_converts_as_conversions_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="toilray.lib.humanize"):
        assert humanize.human2bytes("2Ki") == 2048
        assert humanize.bytes2human(2048) == "2.0 Ki"
    assert sum("Deprecated toil method" in r.getMessage() for r in caplog.records) == 2


@pytest.fixture
def root_logging() -> Any:
    """Put the root logger's level and handlers back after a test that sets them."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_bioio_helpers(tmp_path: Path, root_logging: logging.Logger) -> None:
    marker = tmp_path / "ran"
    bioio.system(["touch", str(marker)])
    assert marker.exists()
    bioio.system(f"test -e {marker}")  # a string goes through the shell
    with pytest.raises(subprocess.CalledProcessError):
        bioio.system("exit 3")

    quiet = logging.getLogger("toil-compat-test")
    quiet.setLevel(logging.ERROR)
    assert bioio.getLogLevelString(quiet) == "ERROR"

    path = bioio.getTempFile(suffix=".txt", rootDir=str(tmp_path))
    assert Path(path).parent == tmp_path and path.endswith(".txt") and os.path.isfile(path)
    elsewhere = bioio.getTempFile()
    assert os.path.isfile(elsewhere)
    os.unlink(elsewhere)

    bioio.setLoggingFromOptions(argparse.Namespace(logLevel="DEBUG", logFile=None))
    assert root_logging.getEffectiveLevel() == logging.DEBUG


def test_stats_and_logging_options_parse_as_toilray_runs_do(tmp_path: Path, root_logging: logging.Logger) -> None:
    assert logger.name.startswith(toil_logger.name)
    parser = argparse.ArgumentParser()
    add_logging_options(parser)
    assert parser.parse_args([]).logLevel == "INFO"
    assert parser.parse_args(["--logLevel", "warn"]).logLevel == "WARNING"
    assert parser.parse_args(["--logDebug"]).logLevel == "DEBUG"
    assert parser.parse_args(["--logOff"]).logLevel == "CRITICAL"
    quiet = argparse.ArgumentParser()
    add_logging_options(quiet, default_level=logging.ERROR)
    assert quiet.parse_args([]).logLevel == "ERROR"

    log_file = tmp_path / "run.log"
    options = parser.parse_args(["--logLevel", "WARN", "--logFile", str(log_file)])
    set_logging_from_options(options)
    assert root_logging.getEffectiveLevel() == logging.WARNING
    pipeline = logging.getLogger("pipeline")  # a script's own logger, below the root
    pipeline.warning("a line for the log file")
    pipeline.info("not at this level")
    text = log_file.read_text()
    assert "a line for the log file" in text and "not at this level" not in text


def test_cpu_count_and_machine_size(tmp_path: Path) -> None:
    cores = cpu_count()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert SingleMachineBatchSystem.numCores == cores
    assert toilray.physicalMemory() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") > 0
    stats = os.statvfs(tmp_path)
    assert 0 < toilray.physicalDisk(str(tmp_path)) <= stats.f_frsize * stats.f_blocks


def test_import_toilray_stays_cheap() -> None:
    """physicalMemory is at the top level without the top level importing Ray or the engine."""
    code = "import sys, toilray; toilray.physicalMemory(); print(sorted({'ray', 'toilray.job'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_io_helpers(tmp_path: Path) -> None:
    made = mkdtemp(prefix="compat-", dir=tmp_path)
    assert os.path.basename(made).startswith("compat-")
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o711

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f.txt").write_text("x")
    (tree / "link").symlink_to(outside)
    robust_rmtree(str(tree))
    assert not tree.exists() and outside.read_text() == "keep me"  # a link is removed, not followed
    robust_rmtree(str(tree))  # already gone: nothing to do
    robust_rmtree(str(outside).encode())
    assert not outside.exists()

    final = tmp_path / "result.txt"
    with pytest.raises(RuntimeError), AtomicFileCreate(str(final)) as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path) == [os.path.basename(made)]  # neither the file nor its temporary
    with AtomicFileCreate(str(final)) as tmp:
        Path(tmp).write_text("whole")
        assert not final.exists()
    assert final.read_text() == "whole"

    source = tmp_path / "tool.sh"
    source.write_text("#!/bin/sh\n")
    source.chmod(0o755)
    copy = tmp_path / "copy.sh"
    atomic_copy(str(source), str(copy))
    assert copy.read_text() == "#!/bin/sh\n" and os.access(copy, os.X_OK)


def test_count_nvidia_gpus_without_nvidia_smi(tmp_path: Path) -> None:
    code = "from toilray.lib.accelerators import count_nvidia_gpus; print(count_nvidia_gpus())"
    env = dict(os.environ, PATH=str(tmp_path))  # no nvidia-smi to be found
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"
    assert count_nvidia_gpus() >= 0


def test_memoize_and_sync_memoize_call_once() -> None:
    calls: list[int] = []

    @memoize
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4]

    started = threading.Barrier(8)
    slow_calls: list[int] = []

    @sync_memoize
    def slow(n: int) -> int:
        slow_calls.append(n)
        return n + 1

    def ask() -> None:
        started.wait()
        assert slow(1) == 2

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert slow_calls == [1]

    assert parse_iso_utc("2016-04-27T00:28:04.000Z").isoformat() == "2016-04-27T00:28:04+00:00"
    assert parse_iso_utc("2016-04-27T00:28:04Z").utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    for bad in ("2016-04-27T00:28:04X", "2016-04-27T00:28:04+02:00"):
        with pytest.raises(ValueError):
            parse_iso_utc(bad)


def _failing(times: int, error: BaseException) -> tuple[list[int], Any]:
    """A function that raises ``error`` its first ``times`` calls, then returns 'done'; its calls."""
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "done"

    return calls, flaky


def test_retry_retries_the_listed_errors_and_gives_up_after_the_intervals() -> None:
    calls, flaky = _failing(2, ValueError("transient"))
    assert retry(intervals=[0, 0, 0], errors=[ValueError])(flaky)() == "done"
    assert len(calls) == 3

    calls, flaky = _failing(10, ValueError("always"))
    with pytest.raises(ValueError, match="always"):
        retry(intervals=[0, 0], errors=[ValueError])(flaky)()
    assert len(calls) == 3  # the first try and one per interval

    calls, flaky = _failing(1, KeyError("not listed"))
    with pytest.raises(KeyError):
        retry(intervals=[0], errors=[ValueError])(flaky)()
    assert len(calls) == 1

    phrase = ErrorCondition(error=RuntimeError, error_message_must_include="try later")
    calls, flaky = _failing(1, RuntimeError("please try later"))
    assert retry(intervals=[0], errors=[phrase])(flaky)() == "done"
    calls, flaky = _failing(1, RuntimeError("broken for good"))
    with pytest.raises(RuntimeError):
        retry(intervals=[0], errors=[phrase])(flaky)()
    assert len(calls) == 1

    def http_error(code: int) -> urllib.error.HTTPError:
        return urllib.error.HTTPError("http://x", code, "status", {}, None)  # type: ignore[arg-type]

    codes = ErrorCondition(error=urllib.error.HTTPError, error_codes=[503])
    calls, flaky = _failing(1, http_error(503))
    assert retry(intervals=[0], errors=[codes])(flaky)() == "done"
    calls, flaky = _failing(1, http_error(404))
    with pytest.raises(urllib.error.HTTPError):
        retry(intervals=[0], errors=[codes])(flaky)()
    assert len(calls) == 1

    # Toil's example: every HTTPError except those saying NotFound.
    all_but = [urllib.error.HTTPError,
               ErrorCondition(error=urllib.error.HTTPError, error_message_must_include="NotFound",
                              retry_on_this_condition=False)]
    calls, flaky = _failing(1, http_error(500))
    assert retry(intervals=[0], errors=all_but)(flaky)() == "done"
    calls, flaky = _failing(1, urllib.error.HTTPError("http://x", 404, "NotFound", {}, None))  # type: ignore[arg-type]
    with pytest.raises(urllib.error.HTTPError):
        retry(intervals=[0], errors=all_but)(flaky)()
    assert len(calls) == 1


def test_old_retry_repeats_attempts_the_predicate_accepts() -> None:
    attempts = 0
    for attempt in old_retry(delays=[0], timeout=60, predicate=lambda e: isinstance(e, OSError)):
        with attempt:
            attempts += 1
            if attempts < 3:
                raise OSError("again")
    assert attempts == 3
    attempts = 0
    with pytest.raises(ValueError):
        for attempt in old_retry(delays=[0], timeout=60, predicate=lambda e: isinstance(e, OSError)):
            with attempt:
                attempts += 1
                raise ValueError("not retriable")
    assert attempts == 1


def test_job_module_exports() -> None:
    description = JobDescription({"memory": "1G", "cores": 2}, "align", unitName="sample-1")
    assert isinstance(description, Requirer)
    assert (description.memory, description.cores, description.jobName, description.unitName) == \
        (10**9, 2, "align", "sample-1")
    assert isinstance(description.jobStoreID, TemporaryID)
    assert description.jobStoreID == description.jobStoreID and TemporaryID() != TemporaryID()

    job = Job(memory="3G", unitName="unit")
    assert job.description.memory == 3 * 10**9 and job.description.unitName == "unit"
    assert job.description.jobStoreID == job.jobStoreID

    class Database(Job.Service):
        def start(self, job: Job) -> str:
            return "up"

        def stop(self, job: Job) -> None:
            pass

    host = ServiceHostJob(Database(memory="100M", unitName="db"))
    assert isinstance(host, Job) and host.unitName == "db" and host.memory == 10**8


def test_name_is_a_wrapped_functions_unit_name_and_unknown_to_job_as_in_toil() -> None:
    assert Job.wrapFn(print, name="sample-7").description.unitName == "sample-7"
    with pytest.raises(TypeError):
        Job(name="sample-7")  # type: ignore[call-arg]  # Toil's Job.__init__ takes no name either


def test_accelerator_strings_parse_as_toils() -> None:
    assert Job(accelerators="cuda:1").accelerators == [{"count": 1, "kind": "gpu", "api": "cuda", "brand": "nvidia"}]
    assert Job(accelerators="nvidia-tesla-k80:2").accelerators == [
        {"count": 2, "kind": "gpu", "model": "nvidia-tesla-k80", "brand": "nvidia"}]
    assert Job(accelerators="gpu").accelerators == [{"count": 1, "kind": "gpu"}]


def test_parse_locator_is_toils() -> None:
    assert Toil.parseLocator("/abs/store") == ("file", "/abs/store")
    assert Toil.parseLocator("./rel:store") == ("file", "./rel:store")
    assert Toil.parseLocator("plain") == ("file", "plain")
    assert Toil.parseLocator("file:/x") == ("file", "/x")
    assert Toil.parseLocator("aws:us-west-2:bucket") == ("aws", "us-west-2:bucket")
    assert Toil.buildLocator("aws", "us-west-2:bucket") == "aws:us-west-2:bucket"


def test_start_and_restart_outside_the_with_block_raise(tmp_path: Path) -> None:
    toil = Toil(Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}"))
    with pytest.raises(ToilContextManagerException, match="outside the \"with Toil"):
        toil.start(Job())
    with pytest.raises(ToilContextManagerException):
        toil.restart()
    source = tmp_path / "input.txt"
    source.write_text("x")
    with pytest.raises(ToilContextManagerException):
        toil.importFile(source.as_uri())
    assert not (tmp_path / "store").exists()
    with toil:
        file_id = toil.importFile(source.as_uri())
    with pytest.raises(ToilContextManagerException):  # and after it
        toil.exportFile(file_id, (tmp_path / "out.txt").as_uri())


def test_batch_systems_package() -> None:
    from toilray.exceptions import DeadlockException as RaisedDeadlock

    assert DeadlockException is RaisedDeadlock  # what the leader raises is what scripts catch
    assert "single_machine" in get_batch_systems()
    assert get_batch_system("single_machine") is SingleMachineBatchSystem
    assert issubclass(SingleMachineBatchSystem, AbstractBatchSystem)

    class Plugin(SingleMachineBatchSystem):
        pass

    add_batch_system_factory("compat-test-plugin", lambda: Plugin)
    assert get_batch_system("compat-test-plugin") is Plugin
    with pytest.raises(KeyError):
        get_batch_system("no-such-system")
    assert BatchJobExitReason.to_string(2) == "FAILED" and BatchJobExitReason.to_string(99) == "99"

    parser = Job.Runner.getDefaultArgumentParser()
    assert parser.parse_args(["store", "--batchSystem", "single_machine"]).batchSystem == "single_machine"


# -- in a running workflow (real Ray) -----------------------------------------------------------


class PositionalResources(Job):
    """A pipeline-style subclass: resources passed positionally, in Toil's order."""

    def __init__(self, local_file: str) -> None:
        Job.__init__(self, "300M", 1, "200M")
        self.local_file = local_file

    def run(self, fileStore: AbstractFileStore) -> dict[str, Any]:
        store = fileStore.jobStore
        seen: dict[str, Any] = {
            "fileStore type": all(isinstance(f, AbstractFileStore) for f in (fileStore, self.fileStore)),
            "jobStore type": isinstance(store, AbstractJobStore) and isinstance(store, JobStore),
            "requirements": (self.memory, self.cores, self.disk),
            "config workDir": store.config.workDir,
        }
        file_id = store.writeFile(self.local_file)
        seen["exists"] = store.fileExists(file_id)
        seen["size"] = store.getFileSize(file_id)
        copy = os.path.join(fileStore.getLocalTempDir(), "copy.txt")
        store.readFile(file_id, copy)
        seen["content"] = Path(copy).read_text()
        seen["forPath"] = FileID.forPath(file_id, copy).size
        with store.writeFileStream(encoding="utf-8") as (handle, stream_id):
            handle.write("streamed")
        with store.readFileStream(stream_id, encoding="utf-8") as reader:
            seen["stream"] = reader.read()
        store.deleteFile(file_id)
        seen["exists after delete"] = store.fileExists(file_id)
        try:
            store.getFileSize(file_id)
        except NoSuchFileException:
            seen["size after delete"] = "NoSuchFileException"
        return seen


def test_job_sees_its_file_store_job_store_and_positional_resources(tmp_path: Path, ray_address: str) -> None:
    local = tmp_path / "input.txt"
    local.write_text("hello from the leader")
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.workDir = str(work_dir)
    with Toil(options) as toil:
        seen = toil.start(PositionalResources(str(local)))
    assert seen == {
        "fileStore type": True,
        "jobStore type": True,
        "requirements": (300 * 10**6, 1, 200 * 10**6),
        "config workDir": str(work_dir),
        "exists": True,
        "size": len("hello from the leader"),
        "content": "hello from the leader",
        "forPath": len("hello from the leader"),
        "stream": "streamed",
        "exists after delete": False,
        "size after delete": "NoSuchFileException",
    }


class RecordingParent(Job):
    """Overrides addChild (to tag children) and _run (with Toil's signature)."""

    def addChild(self, childJob: Any) -> Any:
        childJob.tag = "added through the override"
        return super().addChild(childJob)

    def _run(self, jobGraph: Any = None, fileStore: AbstractFileStore | None = None, **kwargs: Any) -> Any:
        return ("through _run", jobGraph is None and fileStore is self.fileStore, self.run(fileStore))

    def run(self, fileStore: AbstractFileStore | None) -> str:
        child = self.addChild(Tagged())
        return child.rv()


class Tagged(Job):
    tag = "not tagged"

    def run(self, fileStore: AbstractFileStore) -> str:
        return self.tag


def test_subclass_overriding_add_child_and_run_hook(tmp_path: Path, ray_address: str) -> None:
    with Toil(Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")) as toil:
        assert toil.start(RecordingParent()) == ("through _run", True, "added through the override")


def _named_failure(job: Job) -> None:
    raise RuntimeError(f"failing as {job.unitName}")


def test_name_keyword_is_the_unit_name_in_the_failure_report(tmp_path: Path, ray_address: str) -> None:
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.retryCount = 0
    job = Job.wrapJobFn(_named_failure, name="sample-42")
    assert job.unitName == job.description.unitName == "sample-42"
    with pytest.raises(FailedJobsException) as failed, Toil(options) as toil:
        toil.start(job)
    assert "sample-42" in str(failed.value)
    (report,) = JobStore(f"file:{tmp_path / 'store'}").failure_reports().values()
    assert "'_named_failure' sample-42 kind-_named_failure" in report and "failing as sample-42" in report


def test_cuda_job_without_a_gpu_fails_naming_its_accelerator(tmp_path: Path, ray_address: str) -> None:
    """No GPU here: the parsed requirement reaches the scheduler, which fails the job at once."""
    job = Job.wrapFn(print, "never runs", accelerators="cuda:1")
    assert job.description.accelerators == [{"count": 1, "kind": "gpu", "api": "cuda", "brand": "nvidia"}]
    with pytest.raises(FailedJobsException), Toil(Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")) as toil:
        toil.start(job)
    (report,) = JobStore(f"file:{tmp_path / 'store'}").failure_reports().values()
    assert "asks for 1 accelerators (the largest node has 0)" in report


def test_batch_system_single_machine_runs_a_script(tmp_path: Path, script_env: dict[str, str]) -> None:
    from conftest import run_script

    script = tmp_path / "hello.py"
    script.write_text(
        "from toilray.common import Toil\n"
        "from toilray.job import Job\n"
        "from toilray.batchSystems.singleMachine import SingleMachineBatchSystem\n"
        "def hello(cores):\n"
        "    return f'hello on {cores} core(s)'\n"
        "if __name__ == '__main__':\n"
        "    options = Job.Runner.getDefaultArgumentParser().parse_args()\n"
        "    with Toil(options) as toil:\n"
        "        print(toil.start(Job.wrapFn(hello, SingleMachineBatchSystem.numCores)))\n"
    )
    done = run_script(script, f"file:{tmp_path / 'store'}", "--batchSystem", "single_machine", env=script_env)
    assert done.returncode == 0, done.stderr
    assert f"hello on {cpu_count()} core(s)" in done.stdout
    refused = run_script(script, f"file:{tmp_path / 'store2'}", "--batchSystem", "torque", env=script_env)
    assert refused.returncode == 2
    assert "torque is not a toilray batch system" in refused.stderr
