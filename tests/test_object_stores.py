"""Job stores on S3 and GCS (real local servers), and URL import/export.

The core workflow tests run once per store kind (file:, s3://, gs://) with the same
workflow scripts; the rest check what only object stores have: create-only commits, the
leader lease, checksums, the node cache, fault retries, bucket handling and cleanup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import EXAMPLES, run_script
from objectstores import FaultyProxy, ObjectServers, peak_rss_mib, start_object_servers
from together import JobBarrier, copies, read_together, write_global
from toilray.backends.storage.faults import (
    ChecksumMismatchError,
    Retrier,
    StorageAccessDeniedError,
    StorageUnavailableError,
)
from toilray.backends.storage.lease import Lease
from toilray.backends.storage.locators import open_url, service
from toilray.backends.storage.objects import SHA256_KEY, ObjectStorage

from toilray.common import Toil
from toilray.exceptions import FailedJobsException, JobStoreLockedException, NoSuchJobStoreException
from toilray.job import Job
from toilray.jobStores.jobStore import JobStore, open_storage

WORKFLOWS = Path(__file__).parent / "workflows"
KINDS = ["file", "s3", "gs"]


def set_env_args(env: dict[str, str]) -> list[str]:
    """``--setEnv`` options that give Ray workers the same variables."""
    return [arg for name, value in env.items() for arg in ("--setEnv", f"{name}={value}")]


def unique(name: str) -> str:
    return f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')[:40]}-{uuid.uuid4().hex[:8]}"


@dataclass
class StoreCase:
    kind: str
    locator: str
    env: dict[str, str]  # for workflow processes: the session's Ray plus the servers
    args: list[str] = field(default_factory=list)  # --setEnv options for the workers

    def job_store(self) -> JobStore:
        return JobStore(self.locator)

    def exists(self) -> bool:
        return self.job_store().root_exists()


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, script_env: dict[str, str]) -> StoreCase:
    kind = request.param
    if kind == "file":
        return StoreCase(kind, f"file:{tmp_path / 'store'}", script_env)
    object_env = request.getfixturevalue("object_env")
    locator = f"{kind}://toilray-tests/{unique(request.node.name)}/store"
    return StoreCase(kind, locator, {**script_env, **object_env}, set_env_args(object_env))


def make_bucket(kind: str, bucket: str) -> None:
    if not service(kind).bucket_exists(bucket):
        service(kind).create_bucket(bucket)


def executions(count_dir: Path) -> Counter[str]:
    return Counter(name.rsplit("-", 1)[0] for name in os.listdir(count_dir))


# -- the core workflow tests on every kind of store --------------------------------------------


def test_failed_job_keeps_store_and_restart_runs_fixed_code_only(tmp_path: Path, store: StoreCase) -> None:
    script = tmp_path / "flaky.py"
    script.write_text((WORKFLOWS / "flaky.py").read_text())
    counts = tmp_path / "counts"
    counts.mkdir()

    first = run_script(script, store.locator, "--countDir", str(counts), *store.args, env=store.env)
    assert first.returncode != 0
    assert "RuntimeError: boom from flaky" in first.stderr
    assert re.search(r"contains 1 failed jobs: 'flaky'", first.stderr)
    assert store.exists()
    ran = executions(counts)
    assert ran["flaky"] == 2 and all(ran[f"work{i}"] == 1 for i in range(10))

    script.write_text(script.read_text().replace('raise RuntimeError("boom from flaky")  # BUG', "pass"))
    second = run_script(script, store.locator, "--countDir", str(counts), "--restart", *store.args, env=store.env)
    assert second.returncode == 0, second.stderr
    assert "RESULT 145" in second.stdout
    ran = executions(counts)
    assert ran["root"] == 1 and all(ran[f"work{i}"] == 1 for i in range(10)) and ran["flaky"] == 3
    assert not store.exists()


def test_leader_sigkill_then_restart_reruns_no_committed_job(tmp_path: Path, store: StoreCase) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    args = [store.locator, "--countDir", str(counts), "--n", "100", "--seconds", "0.1", *store.args]
    leader = subprocess.Popen([sys.executable, str(WORKFLOWS / "fan_out.py"), *args], env=store.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while len(os.listdir(counts)) < 30:
        assert leader.poll() is None, leader.communicate()
    leader.send_signal(signal.SIGKILL)
    leader.wait()
    committed_before_restart = set(store.job_store().committed_ids())
    assert committed_before_restart

    # The dead leader's lease is still fresh; it names a process of this host that is gone,
    # so the new leader takes it over at once.
    again = run_script(WORKFLOWS / "fan_out.py", *args, "--restart", env=store.env)
    assert again.returncode == 0, again.stderr
    assert f"RESULT {sum(range(100))}" in again.stdout
    runs_by_job: Counter[str] = Counter(name.split("-")[1] for name in os.listdir(counts))
    assert len(runs_by_job) == 100
    assert [j for j in committed_before_restart if runs_by_job.get(j, 0) > 1] == []


def test_files_example(store: StoreCase) -> None:
    result = run_script(EXAMPLES / "files.py", store.locator, *store.args, env=store.env)
    assert result.returncode == 0, result.stderr[-4000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    writer = values["global"]["writer"]
    assert writer["readDefault"] == "What a tangled web we weave"
    assert writer["streamed"] == "Out brief candle" and writer["streamedText"] == "Ünïcödé candle, ∞ ✓"
    assert writer["executableCopy"] and not writer["plainCopyExecutable"]
    successor = values["global"]["successor"]
    assert successor["deletedReadable"] is False and successor["executableCopy"]
    assert values["afterCleanup"] == {"cleanupReadable": False, "textReadable": False, "executableCopy": True}


def test_staging_example_imports_from_s3_and_exports_to_gs(store: StoreCase, object_env: dict[str, str]) -> None:
    make_bucket("s3", "toilray-staging")
    make_bucket("gs", "toilray-staging")
    service("s3").put_bytes("toilray-staging/in.txt", "Grüß dich, ".encode(), {}, None)
    target = f"gs://toilray-staging/{unique(store.kind)}/out.txt"
    env = {**store.env, **object_env}
    result = run_script(EXAMPLES / "staging.py", store.locator, "s3://toilray-staging/in.txt", target,
                        *set_env_args(object_env), env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    destination, key = open_url(target, verify_checksums=True)
    assert destination.read_bytes(key).decode() == "Grüß dich, World!"


# -- a large file --------------------------------------------------------------------------------


# A job's memory may grow by about half this while it writes or reads the file, so a job that
# held the whole file would fail. Streaming costs a bounded amount whatever the size: up to
# 161 MiB seen (boto3's concurrent multipart parts), 32 MiB for a file: store.
BIG = 384 << 20
BIG_GROWTH_MIB = 200


@pytest.mark.parametrize("kind", KINDS)
def test_a_big_file_round_trips_in_bounded_memory(kind: str, tmp_path: Path, script_env: dict[str, str]) -> None:
    # Servers of its own: the emulators keep large objects in memory, and this returns it.
    with contextlib.ExitStack() as stack:
        args: list[str] = []
        env = script_env
        locator = f"file:{tmp_path / 'store'}"
        servers: ObjectServers | None = None
        if kind != "file":
            (tmp_path / "servers").mkdir()
            servers = stack.enter_context(start_object_servers(tmp_path / "servers"))
            env = {**script_env, **servers.environment()}
            args = set_env_args(servers.environment())
            locator = f"{kind}://toilray-big/{unique('big')}"
        result = run_script(WORKFLOWS / "bigfile.py", locator, "--size", str(BIG), *args, env=env, timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
        report = json.loads(result.stdout.split("RESULT ", 1)[1].splitlines()[0])
        server = ""
        if servers is not None:
            pid = servers.s3_pid if kind == "s3" else servers.gcs_pid
            server = f"; server peak {peak_rss_mib(pid):.0f} MiB"
    assert report["intact"] and report["size"] == BIG
    growth = {name: report[f"{name}_growth_kib"] / 1024 for name in ("writer", "reader")}
    leader = report["leader_rss_kib"] / 1024
    print(f"{BIG >> 20} MiB via {kind}: memory growth writer {growth['writer']:.0f} MiB, reader "
          f"{growth['reader']:.0f} MiB; leader peak {leader:.0f} MiB{server}")
    assert all(mib < BIG_GROWTH_MIB for mib in growth.values()), growth
    assert leader < 384, leader  # the leader never holds the file's data


# -- faults ----------------------------------------------------------------------------------------


def test_300_jobs_through_a_proxy_that_resets_connections(script_env: dict[str, str],
                                                          object_servers: ObjectServers) -> None:
    s3_port = int(object_servers.s3_endpoint.rsplit(":", 1)[1])
    with FaultyProxy(s3_port, reset_every=20) as proxy:
        env = object_servers.environment(s3_endpoint=proxy.endpoint)
        locator = f"s3://toilray-faults/{unique('pairs')}"
        result = run_script(WORKFLOWS / "file_pairs.py", locator, "--n", "150", *set_env_args(env),
                            env={**script_env, **env}, timeout=900)
    print(f"proxy: {proxy.connections} connections, {proxy.resets} reset")
    assert result.returncode == 0, result.stderr[-6000:]
    assert f"RESULT {sum(i * (i % 50 + 1) for i in range(150))}" in result.stdout
    assert proxy.resets >= 1  # the faults really happened


def _write_for_readers(job: Job, size: int, readers: int, sync_dir: str) -> list[Any]:
    data = os.urandom(size)
    file_id = write_global(job, data)
    held = [job.addChildJobFn(read_together, file_id, sync_dir, "once", cores=0.1, memory="100M", disk="64M").rv()
            for _ in range(readers)]
    return [hashlib.sha256(data).hexdigest(), held]


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_a_file_read_by_many_jobs_on_a_node_is_downloaded_once(kind: str, tmp_path: Path, ray_address: str,
                                                                object_env: dict[str, str]) -> None:
    # The readers start together; the file is downloaded once, into the node cache, and that
    # cached copy is the only one on the node while they all hold it.
    size, readers = 8 << 20, 6
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    seen: list[dict[tuple[int, int], list[str]]] = []

    def look(phase: str) -> None:
        if phase == "held-once":  # all the readers hold the file now
            seen.append(copies(tmp_path, size))

    port = int((object_env["AWS_ENDPOINT_URL_S3"] if kind == "s3" else object_env["STORAGE_EMULATOR_HOST"])
               .rsplit(":", 1)[1])
    with FaultyProxy(port, reset_every=None) as proxy:
        proxied = {**object_env, "AWS_ENDPOINT_URL_S3" if kind == "s3" else "STORAGE_EMULATOR_HOST": proxy.endpoint}
        options = Job.Runner.getDefaultOptions(f"{kind}://toilray-cache/{unique('shared-read')}")
        options.workDir = str(work_dir)
        options.disableChaining = True  # each reader a Ray task of its own, all running at once
        # Where the removed download cache of object stores kept its copies: nothing may appear there.
        options.setEnv = [f"{name}={value}" for name, value in proxied.items()] + [
            f"TOILRAY_CACHE_DIR={tmp_path / 'old-download-cache'}"]
        with JobBarrier(tmp_path / "sync", readers, ["read-once", "held-once"], look) as barrier, \
                Toil(options) as toil:
            digest, held = toil.start(Job.wrapJobFn(_write_for_readers, size, readers, barrier.directory,
                                                    cores=0.1, memory="100M"))
    assert barrier.errors == []
    assert [r["sha256"] for r in held] == [digest] * readers
    # One copy on the node, in the node cache, and every reader was given that one.
    assert len(seen) == 1 and len(seen[0]) == 1, seen
    (inode, paths), = seen[0].items()
    assert [p for p in paths if re.fullmatch(r"work/toilray-[^/]+/cache/[^/.][^/]*", p)], paths
    assert {r["inode"] for r in held} == {inode}
    assert not (tmp_path / "old-download-cache").exists()
    # Downloaded once: the server sends the readers one copy (the writer's upload gets little back).
    print(f"{kind}: {proxy.bytes_to_clients} bytes sent to clients for {readers} readers of {size}")
    assert size <= proxy.bytes_to_clients < 2 * size, proxy.bytes_to_clients


def test_transient_faults_are_retried_and_permanent_ones_are_not(object_env: dict[str, str]) -> None:
    storage = open_storage(f"s3://toilray-retry/{unique('retry')}")
    assert isinstance(storage, ObjectStorage)
    storage.create_root()
    storage.write_bytes("k", b"value")
    real = storage.service.read_all
    calls: list[str] = []

    def failing(first_failures: int, error: Exception) -> Callable[[str], bytes]:
        def read(path: str) -> bytes:
            calls.append(path)
            if len(calls) <= first_failures:
                raise error
            return real(path)
        return read

    with mock.patch.object(storage.service, "read_all", failing(2, ConnectionResetError(104, "reset by peer"))):
        assert storage.read_bytes("k") == b"value" and len(calls) == 3
    calls.clear()
    with mock.patch.object(storage.service, "read_all", failing(99, PermissionError("AccessDenied"))):
        with pytest.raises(StorageAccessDeniedError, match=re.escape(storage.url("k"))):
            storage.read_bytes("k")
        assert len(calls) == 1
    calls.clear()
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("missing")
    storage._retry = Retrier(attempts=3, first_delay=0.01)
    with mock.patch.object(storage.service, "read_all", failing(99, ConnectionResetError(104, "reset by peer"))):
        with pytest.raises(StorageUnavailableError, match=re.escape(storage.url("k"))):
            storage.read_bytes("k")
        assert len(calls) == 3
    storage.destroy()


# -- create-only commits, the lease, checksums -----------------------------------------------------


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_create_only_write_has_one_winner(kind: str, object_env: dict[str, str]) -> None:
    storage = open_storage(f"{kind}://toilray-once/{unique('once')}")
    storage.create_root()
    results: dict[int, bool] = {}
    start = threading.Barrier(8)

    def contend(index: int) -> None:
        other = open_storage(storage.locator)
        start.wait()
        results[index] = other.write_bytes_once("commits/job", f"attempt {index}".encode())

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1
    assert storage.read_bytes("commits/job") == f"attempt {winners[0]}".encode()
    assert storage.write_bytes_once("commits/job", f"attempt {winners[0]}".encode())  # a retried win
    storage.destroy()


def _write_lease(storage: ObjectStorage, **fields: Any) -> None:
    lease = {"owner": "pid 1 on elsewhere", "host": "elsewhere", "boot_id": "b", "pid": 1,
             "process_started": 1.0, "token": "t", "expires": 0.0, **fields}
    storage.write_bytes("leader.lock", json.dumps(lease).encode())


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_leader_lease_refuses_a_second_leader_and_expires(kind: str, object_env: dict[str, str]) -> None:
    storage = open_storage(f"{kind}://toilray-lease/{unique('lease')}")
    assert isinstance(storage, ObjectStorage)
    storage.create_root()
    storage.lease_seconds = 1.5
    lock = storage.acquire_leader_lock("leader.lock", "first leader")
    with pytest.raises(JobStoreLockedException, match="first leader"):
        storage.acquire_leader_lock("leader.lock", "second leader")
    # The holder renews its lease: the expiry moves forward while it lives.
    first_expiry = json.loads(storage.read_bytes("leader.lock"))["expires"]
    deadline = time.monotonic() + 30
    while json.loads(storage.read_bytes("leader.lock"))["expires"] == first_expiry:
        assert time.monotonic() < deadline, "the lease was never renewed"
        threading.Event().wait(0.05)  # poll interval
    lock.release()
    assert not storage.exists("leader.lock")

    # A fresh lease of a leader on another host is respected; once expired it is taken over.
    _write_lease(storage, owner="leader on another host", expires=time.time() + 3600)
    with pytest.raises(JobStoreLockedException, match="leader on another host"):
        storage.acquire_leader_lock("leader.lock", "me")
    _write_lease(storage, owner="dead leader", expires=time.time() - 1)
    storage.acquire_leader_lock("leader.lock", "me").release()

    # A fresh lease naming a process of this host that has exited is free at once.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_lease(storage, owner="killed leader", host=os.uname().nodename, pid=int(gone.stdout),
                 boot_id=Path("/proc/sys/kernel/random/boot_id").read_text().strip(), expires=time.time() + 3600)
    taken = storage.acquire_leader_lock("leader.lock", "me")
    assert Lease.decode(storage.read_bytes("leader.lock")).owner == "me"  # type: ignore[union-attr]
    taken.release()
    storage.destroy()


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_corrupt_download_is_detected_unless_verification_is_off(kind: str, object_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    locator = f"{kind}://toilray-checksum/{unique('checksum')}"
    storage = open_storage(locator)
    assert isinstance(storage, ObjectStorage)
    storage.create_root()
    original = tmp_path / "original"
    original.write_bytes(b"good data " * 1000)
    storage.put_file("files/a/data", str(original), executable=False)
    # Replace the bytes behind the store's back, keeping the recorded checksum.
    stat = storage.service.stat(storage._path("files/a/data"))
    storage.service.put_bytes(storage._path("files/a/data"), b"evil data " * 1000, dict(stat.metadata), None)
    assert stat.metadata[SHA256_KEY] == hashlib.sha256(original.read_bytes()).hexdigest()

    with pytest.raises(ChecksumMismatchError, match="is corrupt"):
        storage.get_file("files/a/data", str(tmp_path / "copy"), allow_link=True)
    with pytest.raises(ChecksumMismatchError), storage.open_read("files/a/data") as handle:
        handle.read()
    unverified = JobStore(locator, verify_checksums=False)
    unverified.read_file("files/a/data", str(tmp_path / "unchecked"), allow_link=False)
    assert (tmp_path / "unchecked").read_bytes() == b"evil data " * 1000
    storage.destroy()


@pytest.mark.parametrize("verify", [True, False])
def test_checksum_option_reaches_the_workers(verify: bool, object_env: dict[str, str], tmp_path: Path,
                                             ray_address: str) -> None:
    source = tmp_path / "input"
    source.write_bytes(b"good data")
    options = Job.Runner.getDefaultOptions(f"s3://toilray-checksum/{unique('option')}")
    options.setEnv = [f"{name}={value}" for name, value in object_env.items()]
    options.disableJobStoreChecksumVerification = not verify
    options.retryCount = 0
    with Toil(options) as toil:
        file_id = toil.importFile(str(source))
        storage = open_storage(options.jobStore)
        assert isinstance(storage, ObjectStorage)
        stat = storage.service.stat(storage._path(file_id))
        storage.service.put_bytes(storage._path(file_id), b"evil data", dict(stat.metadata), None)
        if verify:
            with pytest.raises(FailedJobsException):
                toil.start(Job.wrapJobFn(_read_text, file_id))
            reports = list(JobStore(options.jobStore).failure_reports().values())
            assert any("ChecksumMismatchError" in report for report in reports), reports
        else:
            assert toil.start(Job.wrapJobFn(_read_text, file_id)) == "evil data"


def _read_text(job: Job, file_id: str) -> str:
    with open(job.fileStore.readGlobalFile(file_id)) as handle:
        return handle.read()


# -- buckets, errors, cleanup ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_destroy_leaves_no_object_behind(kind: str, object_env: dict[str, str], ray_address: str) -> None:
    # In a bucket the store created: the bucket goes too.
    own_bucket = unique("own")[:30]
    options = Job.Runner.getDefaultOptions(f"{kind}://{own_bucket}/wf")
    options.clean = "never"
    options.setEnv = [f"{name}={value}" for name, value in object_env.items()]
    with Toil(options) as toil:
        assert toil.start(Job.wrapJobFn(_write_some_files)) == 3
    objects = service(kind).find(own_bucket)
    assert any("/files/" in o for o in objects) and any("/commits/" in o for o in objects)
    cleaned = subprocess.run([sys.executable, "-m", "toilray", "clean", options.jobStore],
                             env={**os.environ, **object_env}, capture_output=True, text=True, timeout=300)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not service(kind).bucket_exists(own_bucket)

    # In a bucket the user owns: everything under the prefix goes, the rest stays.
    bucket = unique("shared")[:30]
    make_bucket(kind, bucket)
    service(kind).put_bytes(f"{bucket}/keep-me", b"not the store's", {}, None)
    store = JobStore(f"{kind}://{bucket}/wf")
    store.initialize()
    store.write_start({"workflowID": "w", "rootJobID": "r", "resultJobID": "r"}, [])
    store.write_file(__file__)
    store.destroy()
    assert service(kind).find(bucket) == [f"{bucket}/keep-me"]


def _write_some_files(job: Job) -> int:
    for index in range(3):
        with job.fileStore.writeGlobalFileStream() as (stream, _):
            stream.write(f"file {index}".encode())
    return 3


def test_restart_of_a_store_in_a_missing_bucket_fails_naming_it(object_env: dict[str, str]) -> None:
    for locator in ("s3://toilray-no-such-bucket/x", "gs://toilray-no-such-bucket/x", "aws:us-east-1:toilray-nope"):
        options = Job.Runner.getDefaultOptions(locator)
        options.restart = True
        with pytest.raises(NoSuchJobStoreException) as missing, Toil(options):
            pass
        assert locator in str(missing.value) and "\n" not in str(missing.value)


def test_toil_locators_name_a_bucket_in_a_region_or_project(object_env: dict[str, str]) -> None:
    aws = open_storage("aws:us-west-2:toilray-aws-style")
    google = open_storage("google:my-project:toilray-google-style")
    assert isinstance(aws, ObjectStorage) and isinstance(google, ObjectStorage)
    assert (aws.bucket, aws.root, google.bucket, google.root) == ("toilray-aws-style", "", "toilray-google-style", "")
    for storage in (aws, google):
        assert storage.create_root()
        storage.destroy()
        assert not storage.service.bucket_exists(storage.bucket)


# -- import and export -----------------------------------------------------------------------------


def test_export_to_s3_gs_and_a_path_and_import_from_http(store: StoreCase, object_env: dict[str, str],
                                                         tmp_path: Path, http_root: tuple[str, Path],
                                                         ray_address: str) -> None:
    base_url, served = http_root
    payload = os.urandom(3 << 20) + b"end"
    (served / "input.bin").write_bytes(payload)
    options = Job.Runner.getDefaultOptions(store.locator)
    options.setEnv = [f"{name}={value}" for name, value in object_env.items()]
    prefix = unique(store.kind)
    with Toil(options) as toil:
        imported = toil.importFile(f"{base_url}/input.bin")
        assert imported.size == len(payload)
        for target in (f"s3://toilray-exports/{prefix}/out.bin", f"gs://toilray-exports/{prefix}/out.bin",
                       str(tmp_path / "out.bin")):
            if target.startswith(("s3:", "gs:")):
                make_bucket(target[:2], "toilray-exports")
            toil.exportFile(imported, target)
        # Inside a job, through the file store: import from s3://, export to gs://.
        copied = toil.start(Job.wrapJobFn(_copy_between_buckets, f"s3://toilray-exports/{prefix}/out.bin",
                                          f"gs://toilray-exports/{prefix}/copied.bin"))
        assert copied == len(payload)
        for url in (f"{base_url}/missing.bin", f"s3://toilray-exports/{prefix}/missing.bin",
                    f"gs://toilray-exports/{prefix}/missing.bin", "s3://toilray-no-such-bucket/x.bin"):
            with pytest.raises(FileNotFoundError, match=re.escape(url)):
                toil.importFile(url)
    for url in (f"s3://toilray-exports/{prefix}/out.bin", f"gs://toilray-exports/{prefix}/out.bin",
                f"gs://toilray-exports/{prefix}/copied.bin"):
        exported, key = open_url(url, verify_checksums=True)
        assert hashlib.sha256(exported.read_bytes(key)).digest() == hashlib.sha256(payload).digest(), url
    assert (tmp_path / "out.bin").read_bytes() == payload


def _copy_between_buckets(job: Job, source: str, target: str) -> int:
    file_id = job.fileStore.importFile(source)
    job.fileStore.exportFile(file_id, target)
    return int(file_id.size)
