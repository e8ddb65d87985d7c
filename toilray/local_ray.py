"""The toilray-managed local Ray that workflows on this machine share.

Starting Ray costs seconds; connecting to a running instance costs well under one. A run
without ``--rayAddress`` (or ``RAY_ADDRESS``) and without ``--embeddedRay`` attaches to the
managed instance, starting it when none runs; the instance outlives the run and stops by
itself after its idle timeout without a workflow. ``toilray local-ray start`` starts one that
stays until ``toilray local-ray stop``. Its Python workers start as forks of a warm process
(``toilray.ray_workers``).

The instance is a small Python process in its own session (the *server*) that started Ray
with ``ray.init`` (so clients connect with Ray's default settings, token authentication
included) and shuts it down when it stops; stopping it ends that Ray and nothing else (unlike
``ray stop``). Everything lives in the state directory, ``$TOILRAY_HOME`` (default
``~/.toilray``), and every question is answered by a lock the kernel releases when its holder
dies, however it dies (``kill -9`` included), so no pid can be stale:

- ``local-ray.json``: where the instance is (address, session, code stamp, idle timeout). The
  server holds an exclusive ``flock`` on it for as long as it runs: a record nobody holds a
  lock on is stale and is replaced.
- ``local-ray.lock``: held while a run looks for, starts, restarts or attaches to an instance,
  and by the server while it decides to stop, so two runs never start two instances and a run
  never attaches to one that is stopping.
- ``local-ray-<pid>.leases``: each attached leader process holds a shared ``flock`` on it until
  it exits (it stays connected to Ray that long). The server is idle when it can take the
  lock exclusively; the file's modification time is the last attach, so a run shorter than
  the server's polling interval still counts.

Upgrading toilray or editing its code must not leave a run on processes that run other code:
the server records a stamp of the code it runs (toilray's source files, by path, size and
modification time, with Ray's version and the interpreter). A run whose stamp differs
restarts the instance when no leader is attached, and otherwise runs on an embedded Ray of
its own (saying so) rather than stop Ray under the runs that use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import IO

from toilray.exceptions import ToilrayError
from toilray.installation import PACKAGE, code_stamp, state_dir
from toilray.lib.processes import pid_alive

logger = logging.getLogger(__name__)

_START_TIMEOUT = 120.0
_STOP_TIMEOUT = 60.0
DEFAULT_IDLE_TIMEOUT = 600.0

# Lease files this process holds a shared lock on, by path: held until the process exits.
_held_leases: dict[str, IO[str]] = {}
# A server this process launched ahead of attaching to it (``starting_ahead``), with the state
# directory's lock, held until ``attach`` has waited for it.
_ahead: tuple[IO[str], subprocess.Popen[bytes]] | None = None


class LocalRayError(ToilrayError):
    """The local Ray instance could not be started or reached."""


@dataclass(frozen=True, slots=True)
class LocalRay:
    address: str
    pid: int
    session_dir: str
    stamp: str
    idle_timeout: float | None  # None: until 'toilray local-ray stop'
    num_cpus: int
    leases: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A run's hold on the managed instance; ``started``: this run started it."""

    instance: LocalRay
    started: bool


def _state_path() -> str:
    return os.path.join(state_dir(), "local-ray.json")


def log_path() -> str:
    return os.path.join(state_dir(), "local-ray.log")


def _lock() -> IO[str]:
    """The state directory's lock (see the module docstring), taken: closing the file lets it go."""
    os.makedirs(state_dir(), exist_ok=True)
    handle = open(os.path.join(state_dir(), "local-ray.lock"), "a")  # noqa: SIM115 (the caller closes it)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Hold the state directory's lock."""
    with _lock():
        yield


def _unlocked(handle: IO[str], mode: int) -> bool:
    """Whether ``handle``'s file can be locked in ``mode`` at once (the lock is let go again)."""
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def _recorded() -> LocalRay | None:
    """The instance the state file names if its server still holds the file's lock."""
    try:
        with open(_state_path()) as handle:
            if _unlocked(handle, fcntl.LOCK_SH):
                return None  # its server is gone
            return LocalRay(**json.load(handle))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def running() -> LocalRay | None:
    """The managed instance if one is running."""
    return _recorded()


def in_use(instance: LocalRay) -> bool:
    """Whether a leader is attached to ``instance`` (holds a lease)."""
    try:
        with open(instance.leases) as handle:
            return not _unlocked(handle, fcntl.LOCK_EX)
    except FileNotFoundError:
        return False


def _current() -> LocalRay | None:
    """With the lock held: the running instance; a stale record is removed, with the lease
    files of instances that are gone (a killed server leaves its own)."""
    instance = _recorded()
    if instance is None:
        for path in [_state_path(), *glob.glob(os.path.join(glob.escape(state_dir()), "local-ray-*.leases"))]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return instance


def _spawn(num_cpus: int, idle_timeout: float | None) -> LocalRay:
    """With the lock held: start a server and wait until it has recorded its instance."""
    return _await(_launch(num_cpus, idle_timeout))


def _launch(num_cpus: int, idle_timeout: float | None) -> subprocess.Popen[bytes]:
    """With the lock held: start a server."""
    command = [sys.executable, "-m", "toilray.local_ray", str(num_cpus), "none" if idle_timeout is None else
               repr(idle_timeout)]
    # The instance outlives this run, so its Ray session must not live in the run's own temporary
    # directory (which may be removed, or too deep for Ray's socket paths); RAY_TMPDIR still
    # chooses. Runs give their workers their own environment, TMPDIR included.
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    env["TOILRAY_HOME"] = state_dir()
    with open(log_path(), "w") as log:
        # Run from the package's parent directory so that the server imports this very toilray.
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=os.path.dirname(PACKAGE), env=env, start_new_session=True)


def _await(process: subprocess.Popen[bytes]) -> LocalRay:
    """With the lock held: wait until server ``process`` has recorded its instance."""
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        instance = _recorded()
        if instance is not None and instance.pid == process.pid:
            return instance
        if process.poll() is not None:
            raise LocalRayError(f"The local Ray instance exited with status {process.returncode}; see {log_path()}")
        if time.monotonic() > deadline:
            process.kill()
            raise LocalRayError(f"Ray did not start within {_START_TIMEOUT:g} s; see {log_path()}")
        # The first run of the day waits here: a short interval (reading a small file) is time saved.
        time.sleep(0.02)


def _terminate(instance: LocalRay) -> None:
    """With the lock held: stop ``instance``'s server and wait until it has gone."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_state_path())
    with contextlib.suppress(ProcessLookupError):
        os.kill(instance.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while pid_alive(instance.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(instance.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(instance.pid, signal.SIGKILL)


def start(num_cpus: int | None = None, idle_timeout: float | None = None) -> LocalRay:
    """Start the managed instance (or return the one already running)."""
    with _locked():
        return _current() or _spawn(num_cpus or os.cpu_count() or 1, idle_timeout)


@contextlib.contextmanager
def starting_ahead(idle_timeout: float) -> Iterator[None]:
    """Around the start of a run that is to ``attach``: where no instance runs, its server starts now,
    and the rest of the run's start-up in the block (importing Ray and the leader, a third of a
    second) overlaps the server's; ``attach`` in the block waits for it. The state directory's lock is
    held until then, as when ``attach`` starts one, and let go at the block's end at the latest (the
    server, started, records itself and stops when idle)."""
    global _ahead
    if "ray" in sys.modules:  # nothing left to overlap
        yield
        return
    handle = _lock()
    if _current() is not None:
        handle.close()  # running: attach checks its code and leases it
        yield
        return
    _ahead = (handle, _launch(os.cpu_count() or 1, idle_timeout))
    try:
        yield
    finally:
        _ahead = None
        handle.close()


def attach(idle_timeout: float) -> Attachment | None:
    """For a run without an address: the managed instance, started (with ``idle_timeout``) if
    none runs, with a lease this process holds until it exits. None when the instance runs
    other code than this process and leaders are attached to it: the run must start its own Ray.
    """
    global _ahead
    if _ahead is not None:
        handle, process = _ahead
        _ahead = None
        with handle:
            launched = _await(process)
            _lease(launched)
        return Attachment(launched, True)
    stamp = code_stamp()
    with _locked():
        instance = _current()
        started = False
        if instance is not None and instance.stamp != stamp:
            if in_use(instance):
                logger.warning("toilray's code changed since the local Ray at %s started, and other workflows "
                               "run on it: this run starts a Ray of its own (the local one is replaced once "
                               "it is idle)", instance.address)
                return None
            logger.info("toilray's code changed since the local Ray at %s started: restarting it",
                        instance.address)
            _terminate(instance)
            instance = _spawn(instance.num_cpus, instance.idle_timeout)
            started = True
        elif instance is None:
            instance = _spawn(os.cpu_count() or 1, idle_timeout)
            started = True
        _lease(instance)
    return Attachment(instance, started)


def _lease(instance: LocalRay) -> None:
    """Hold ``instance``'s lease for the rest of this process's life (see the module docstring)."""
    if instance.leases not in _held_leases:
        handle = open(instance.leases, "a")  # noqa: SIM115 (held open until this process exits)
        fcntl.flock(handle, fcntl.LOCK_SH)
        _held_leases[instance.leases] = handle
    os.utime(instance.leases)


def stop() -> bool:
    """Stop the managed instance; False if none was running."""
    with _locked():
        instance = _current()
        if instance is None:
            return False
        _terminate(instance)
    return True


def _idle_for(leases: str, idle_since: float | None) -> tuple[bool, float | None]:
    """Whether no leader is attached, and since when (the last attach counts)."""
    with open(leases) as handle:
        if not _unlocked(handle, fcntl.LOCK_EX):
            return False, None
    last_attach = os.stat(leases).st_mtime
    return True, max(idle_since or time.time(), last_attach)


class _Record(logging.Filter):
    """The server's record of its instance (``local-ray.json``, locked until the server ends: see
    ``running``), written once. As a filter on Ray's log, it is written at the line by which
    ``ray.init`` tells that it has started the node, before it goes on to connect this process as a
    driver (0.5-0.9 s on 2 cores): a run waiting for the instance then connects beside this process
    rather than after it. Where a Ray version words that line otherwise, ``write`` after ``ray.init``
    is the first."""

    def __init__(self, instance: Callable[[str, str], LocalRay]) -> None:
        super().__init__()
        self._instance = instance  # the instance, from Ray's GCS address and session directory
        self._written: LocalRay | None = None
        self._held: IO[str] | None = None

    def filter(self, entry: logging.LogRecord) -> bool:
        if isinstance(entry.msg, str) and entry.msg.startswith("Started a local Ray instance"):
            import ray._private.worker

            node = ray._private.worker._global_node
            if node is not None:
                self.write(node.gcs_address, node.get_session_dir_path())
        return True

    def write(self, address: str, session_dir: str) -> LocalRay:
        """The instance recorded, recording it unless it is already."""
        if self._written is None:
            self._written = self._instance(address, session_dir)
            path = f"{_state_path()}.{os.getpid()}"
            self._held = open(path, "w")  # noqa: SIM115 (held open until this process ends)
            fcntl.flock(self._held, fcntl.LOCK_EX)
            json.dump(asdict(self._written), self._held)
            self._held.flush()
            os.replace(path, _state_path())
        return self._written


def _serve(num_cpus: int, idle_timeout: float | None) -> None:
    """The server's process: start Ray, record it, stop after ``idle_timeout`` seconds without
    a leader attached (or on SIGTERM), and shut Ray down."""
    import ray

    from toilray import ray_workers
    from toilray.lib import ray_reaper

    leases = os.path.join(state_dir(), f"local-ray-{os.getpid()}.leases")
    open(leases, "a").close()
    # Now: ray.init may write the record while forked_workers names another interpreter.
    stamp = code_stamp()
    record = _Record(lambda address, session_dir: LocalRay(address, os.getpid(), session_dir, stamp, idle_timeout,
                                                           num_cpus, leases))

    def shut_down(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    ray_log = logging.getLogger("ray._private.worker")
    ray_log.addFilter(record)
    try:
        with ray_workers.forked_workers():
            context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        ray_log.removeFilter(record)
        session_dir = context.address_info["session_dir"]  # type: ignore[attr-defined]
        # Should this process be killed, its Ray's agents go with it instead of a minute later.
        _reaper = ray_reaper.start(session_dir)
        signal.signal(signal.SIGTERM, shut_down)
        _watch(record.write(ray.get_runtime_context().gcs_address, session_dir), idle_timeout)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leases)
        ray.shutdown()


def _watch(instance: LocalRay, idle_timeout: float | None) -> None:
    """Return once ``instance`` has been idle for ``idle_timeout`` seconds (never when None);
    its record is gone by then, so no run attaches to it any more."""
    if idle_timeout is None:
        while True:
            signal.pause()
    poll = min(1.0, max(0.1, idle_timeout / 10))
    idle_since: float | None = None
    while True:
        time.sleep(poll)
        idle, idle_since = _idle_for(instance.leases, idle_since)
        if not idle or idle_since is None or time.time() - idle_since < idle_timeout:
            continue
        with _locked():
            if in_use(instance):
                continue
            if _recorded() == instance:
                os.unlink(_state_path())
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]), None if sys.argv[2] == "none" else float(sys.argv[2]))
