"""Job.Service: lifecycle around the host's successors, ordering, failure and deadlock."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from toilray.common import Toil
from toilray.exceptions import DeadlockException, FailedJobsException
from toilray.job import Job


class _KeyValueHandler(socketserver.StreamRequestHandler):
    """One request per connection: 'SET key value' or 'GET key'."""

    def handle(self) -> None:
        words = self.rfile.readline().decode().split()
        store: dict[str, str] = self.server.data  # type: ignore[attr-defined]
        if words[0] == "SET":
            store[words[1]] = words[2]
            self.wfile.write(b"OK\n")
        else:
            self.wfile.write((store.get(words[1], "") + "\n").encode())


def _ask(address: tuple[str, int], line: str) -> str:
    with socket.create_connection(address, timeout=30) as conn:
        conn.sendall(line.encode() + b"\n")
        return conn.makefile().readline().strip()


def _log(path: str, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{text} {time.time()}\n")


class KeyValueService(Job.Service):
    def __init__(self, log: str, preemptible: bool = False) -> None:
        super().__init__(cores=0.1, memory="100M", preemptible=preemptible)
        self.log = log

    def start(self, job: Job) -> tuple[str, int]:
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _KeyValueHandler)
        self.server.data = {}  # type: ignore[attr-defined]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        _log(self.log, "service-up")
        return self.server.server_address

    def check(self) -> bool:
        return True

    def stop(self, job: Job) -> None:
        self.server.shutdown()
        self.server.server_close()
        _log(self.log, "service-stopped")


def _writer(address: tuple[str, int], key: str, log: str) -> None:
    _log(log, f"writer-{key}")
    assert _ask(tuple(address), f"SET {key} value-of-{key}") == "OK"


def _reader(address: tuple[str, int], log: str) -> list[str]:
    _log(log, "reader")
    return [_ask(tuple(address), f"GET {key}") for key in ("a", "b", "c")]


def _host(job: Job, log: str) -> Any:
    address = job.addService(KeyValueService(log))
    for key in ("a", "b", "c"):
        job.addChildFn(_writer, address, key, log, cores=0.1, memory="50M")
    return job.addFollowOnFn(_reader, address, log, cores=0.1, memory="50M").rv()


def _events(log: str) -> list[tuple[str, float]]:
    return [(line.split()[0], float(line.split()[1])) for line in Path(log).read_text().splitlines()]


def _options(tmp_path: Path, **overrides: Any) -> Any:
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.servicePollingInterval = 0.5
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


def test_service_is_up_for_its_users_and_stopped_once_after_them(tmp_path: Path, ray_address: str) -> None:
    log = str(tmp_path / "events")
    root = Job()
    host = root.addChildJobFn(_host, log, cores=0.1)
    after = root.addFollowOnFn(_log, log, "after-host")
    with Toil(_options(tmp_path)) as toil:
        toil.start(root)
        # The reader's value reaches the root's successors through promises.
    del after
    events = _events(log)
    names = [name for name, _ in events]
    assert names.count("service-up") == 1 and names.count("service-stopped") == 1
    up = names.index("service-up")
    stopped = names.index("service-stopped")
    users = [i for i, name in enumerate(names) if name.startswith("writer-") or name == "reader"]
    assert len(users) == 4 and all(up < i < stopped for i in users)
    assert names.index("reader") > max(i for i, n in enumerate(names) if n.startswith("writer-"))
    assert stopped < names.index("after-host")
    del host


def test_service_values_reach_the_jobs_through_the_promise(tmp_path: Path, ray_address: str) -> None:
    log = str(tmp_path / "events")
    with Toil(_options(tmp_path)) as toil:
        assert toil.start(Job.wrapJobFn(_host, log, cores=0.1)) == ["value-of-a", "value-of-b", "value-of-c"]


class _BarrierService(Job.Service):
    """Logs when its start begins and ends; the first two wait to see each other start."""

    def __init__(self, name: str, directory: str, wait_for: str | None) -> None:
        super().__init__(cores=0.1, memory="50M")
        self.name, self.directory, self.wait_for = name, directory, wait_for

    def start(self, job: Job) -> str:
        log = os.path.join(self.directory, "events")
        _log(log, f"{self.name}-begin")
        open(os.path.join(self.directory, self.name), "w").close()
        if self.wait_for:
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(self.directory, self.wait_for)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.wait_for} never started alongside {self.name}")
                time.sleep(0.05)
        _log(log, f"{self.name}-end")
        return self.name

    def stop(self, job: Job) -> None:
        _log(os.path.join(self.directory, "events"), f"{self.name}-stop")


def _uses(values: list[str], directory: str) -> list[str]:
    _log(os.path.join(directory, "events"), "user")
    return values


def _host_of_three(job: Job, directory: str) -> Any:
    first = _BarrierService("first", directory, wait_for="second")
    second = _BarrierService("second", directory, wait_for="first")
    sub = _BarrierService("sub", directory, wait_for=None)
    values = [job.addService(first), job.addService(second), job.addService(sub, parentService=first)]
    return job.addChildFn(_uses, values, directory, cores=0.1).rv()


def test_parallel_services_and_sub_service_start_in_order(tmp_path: Path, ray_address: str) -> None:
    with Toil(_options(tmp_path)) as toil:
        assert toil.start(Job.wrapJobFn(_host_of_three, str(tmp_path), cores=0.1)) == ["first", "second", "sub"]
    events = dict(_events(str(tmp_path / "events")))
    # first and second started in parallel (each saw the other begin), sub only after first was up.
    assert events["sub-begin"] >= events["first-end"]
    assert events["user"] >= max(events["first-end"], events["second-end"], events["sub-end"])
    assert events["sub-stop"] <= events["first-stop"]  # sub-services stop before their parent
    assert min(events["first-stop"], events["second-stop"]) >= events["user"]


class _FailingService(Job.Service):
    def __init__(self) -> None:
        super().__init__(cores=0.1, memory="50M")

    def start(self, job: Job) -> str:
        return "up"

    def check(self) -> bool:
        raise RuntimeError("the service broke")

    def stop(self, job: Job) -> None:
        return None


def _waits_forever(address: str) -> None:
    threading.Event().wait()


def _host_of_failing(job: Job) -> None:
    address = job.addService(_FailingService())
    job.addChildFn(_waits_forever, address, cores=0.1)


def test_failed_service_fails_the_host_and_its_users(tmp_path: Path, ray_address: str) -> None:
    with pytest.raises(FailedJobsException, match="_host_of_failing"), Toil(_options(tmp_path)) as toil:
        toil.start(Job.wrapJobFn(_host_of_failing, cores=0.1))


def _failing_user(address: tuple[str, int]) -> None:
    raise RuntimeError("the user of the service failed")


def _host_of_a_failing_user(job: Job, log: str) -> None:
    address = job.addService(KeyValueService(log))
    job.addChildFn(_failing_user, address, cores=0.1)
    job.addFollowOnFn(_reader, address, log, cores=0.1)


def test_a_failed_user_of_a_service_fails_the_run_without_waiting_for_a_deadlock(tmp_path: Path,
                                                                                 ray_address: str) -> None:
    # The service is up but can serve no job any more: the run fails at once naming the job
    # that failed, not with a DeadlockException once --deadlockWait has passed.
    log = str(tmp_path / "events")
    options = _options(tmp_path, retryCount=0, deadlockWait=60)
    with pytest.raises(FailedJobsException, match="contains 1 failed jobs: '_failing_user'"), Toil(options) as toil:
        toil.start(Job.wrapJobFn(_host_of_a_failing_user, log, cores=0.1))
    assert [name for name, _ in _events(log)] == ["service-up"]  # the follow-on never ran


def _host_with_unstartable_service(job: Job, log: str) -> None:
    address = job.addService(KeyValueService(log))
    job.addChildFn(_writer, address, "a", log, cores=0.1)


def test_no_room_for_services_raises_deadlock(tmp_path: Path, ray_address: str) -> None:
    log = str(tmp_path / "events")
    options = _options(tmp_path, maxServiceJobs=0, deadlockWait=2)
    with pytest.raises(DeadlockException, match="Only services could run for 2 s"), Toil(options) as toil:
        toil.start(Job.wrapJobFn(_host_with_unstartable_service, log, cores=0.1))
    assert not os.path.exists(log)  # neither the service nor its user ever ran


def _host_of_preemptible(job: Job, log: str) -> Any:
    address = job.addService(KeyValueService(log, preemptible=True))
    return job.addChildFn(_writer, address, job.jobStoreID[:8], log, cores=0.1, memory="50M").rv()


def test_preemptible_services_have_a_limit_of_their_own(tmp_path: Path, ray_address: str) -> None:
    # As in Toil: preemptible services count against --maxPreemptibleServiceJobs only.
    log = str(tmp_path / "events")
    root = Job()
    for _ in range(2):
        root.addChildJobFn(_host_of_preemptible, log, cores=0.1)
    with Toil(_options(tmp_path, maxServiceJobs=0, maxPreemptibleServiceJobs=1, deadlockWait=30)) as toil:
        toil.start(root)
    names = [name for name, _ in _events(log)]
    assert names.count("service-up") == 2
    # One at a time: each service stopped before the other started.
    assert [n for n in names if n.startswith("service")] == ["service-up", "service-stopped"] * 2


def test_a_job_has_room_beside_services_that_may_sit_on_other_nodes() -> None:
    from toilray.services import room_beside_services

    # Three nodes of one core, two services of 0.1: a job of one core still runs somewhere.
    assert room_beside_services([1.0, 1.0, 1.0], 3.0, 0.2) >= 1.0
    # One node of two cores held whole by services: no job of one core can run.
    assert room_beside_services([2.0], 2.0, 2.0) < 1.0
    # No node large enough, whatever the services hold.
    assert room_beside_services([1.0, 1.0], 2.0, 0.0) < 2.0

