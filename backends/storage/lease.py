"""The leader lock of an object store: a lease object that its holder keeps renewing.

Object stores have no locks that die with a process, so the lock is an object naming its
holder and an expiry time. It is taken with a create-only write; the holder renews it in a
background thread with writes conditional on the version it last wrote (so a holder that
lost the lease can never overwrite its successor's). A second leader is refused while the
lease is fresh. A lease is free when it has expired (its holder died, or lost contact), or
at once when it names a process on this very host that no longer runs: a leader killed and
restarted on the same machine need not wait for the expiry.

Expiry times are read against the local clock, so hosts sharing a store should keep their
clocks within a fraction of the lease time of each other (NTP does far better).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import psutil

from toilray.exceptions import JobStoreLockedException
from toilray.jobStores.storage import LeaderLock

logger = logging.getLogger("toilray.storage")

CREATE_ONLY = ""
_MAX_CONTENDED_TRIES = 10


class LeaseObjects(Protocol):
    """The conditional operations on one object that a lease needs (retried by the caller)."""

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """Content and version; FileNotFoundError when absent."""

    def put_conditional(self, key: str, data: bytes, precondition: str) -> str | None:
        """Write if absent (CREATE_ONLY) or still at ``precondition``; the new version or None."""

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class Lease:
    owner: str
    host: str
    boot_id: str
    pid: int
    process_started: float
    token: str
    expires: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def decode(data: bytes) -> Lease | None:
        try:
            return Lease(**json.loads(data))
        except (ValueError, TypeError):
            return None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _process_started(pid: int) -> float:
    try:
        return round(psutil.Process(pid).create_time(), 2)
    except psutil.Error:
        return -1.0


def holder_is_gone(lease: Lease) -> bool:
    """True when the lease names a process of this host (since its last boot) that has exited."""
    if lease.host != socket.gethostname() or not lease.boot_id or lease.boot_id != _boot_id():
        return False
    try:
        started = round(psutil.Process(lease.pid).create_time(), 2)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # cannot tell: assume it is alive
        return False
    return started != lease.process_started  # the pid was reused by a newer process


class LeaseLock(LeaderLock):
    """A held lease, renewed every third of its duration until ``release``."""

    def __init__(self, objects: LeaseObjects, key: str, lease: Lease, version: str, seconds: float,
                 describe: str) -> None:
        self._objects = objects
        self._key = key
        self._lease = lease
        self._version = version
        self._seconds = seconds
        self._describe = describe
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._renew_until_stopped, name="toilray-lease", daemon=True)
        self._thread.start()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self._seconds / 3):
            renewed = Lease(**{**asdict(self._lease), "expires": time.time() + self._seconds})
            try:
                version = self._objects.put_conditional(self._key, renewed.encode(), self._version)
            except Exception as exc:  # a failed renewal is retried at the next beat
                logger.warning("Could not renew the leader lease of %s: %s", self._describe, exc)
                continue
            if version is None:
                version = _confirm_written(self._objects, self._key, renewed)
            if version is None:
                self.lost = True
                logger.error("The leader lease of %s was taken over by another leader; stop this one", self._describe)
                return
            self._lease, self._version = renewed, version

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if self.lost:
            return
        # Nobody else writes a fresh lease, so the read-then-delete cannot remove another's.
        with contextlib.suppress(FileNotFoundError):
            data, _ = self._objects.read_versioned(self._key)
            current = Lease.decode(data)
            if current is not None and current.token == self._lease.token:
                self._objects.delete(self._key)


def _confirm_written(objects: LeaseObjects, key: str, lease: Lease) -> str | None:
    """After a failed precondition: the version, if the object holds ``lease`` after all.

    A write whose answer was lost on the way is retried, and the retry then fails its own
    precondition; the content tells whether the first attempt had succeeded.
    """
    try:
        data, version = objects.read_versioned(key)
    except FileNotFoundError:
        return None
    return version if data == lease.encode() else None


def acquire_lease(objects: LeaseObjects, key: str, owner: str, seconds: float, describe: str,
                  clock: Callable[[], float] = time.time) -> LeaseLock:
    """Take the lease at ``key`` or raise JobStoreLockedException naming its live holder."""
    pid = os.getpid()
    base = Lease(owner=owner, host=socket.gethostname(), boot_id=_boot_id(), pid=pid,
                 process_started=_process_started(pid), token=uuid.uuid4().hex, expires=0.0)
    for _ in range(_MAX_CONTENDED_TRIES):
        mine = Lease(**{**asdict(base), "expires": clock() + seconds})
        version = objects.put_conditional(key, mine.encode(), CREATE_ONLY)
        if version is not None:
            return LeaseLock(objects, key, mine, version, seconds, describe)
        try:
            data, current_version = objects.read_versioned(key)
        except FileNotFoundError:
            continue  # released meanwhile: try to create it again
        if data == mine.encode():  # our own write, whose answer was lost and retried
            return LeaseLock(objects, key, mine, current_version, seconds, describe)
        current = Lease.decode(data)
        if current is not None and current.expires > clock() and not holder_is_gone(current):
            remaining = current.expires - clock()
            raise JobStoreLockedException(
                f"The job store '{describe}' is in use by another running leader ({current.owner}); "
                f"its lease runs for {remaining:.0f} s more unless renewed"
            )
        # Expired, unreadable, or its holder is dead: take it over unless someone is faster.
        mine = Lease(**{**asdict(base), "expires": clock() + seconds})
        version = objects.put_conditional(key, mine.encode(), current_version)
        if version is None:
            version = _confirm_written(objects, key, mine)
        if version is not None:
            if current is not None:
                logger.info("Took over the expired leader lease of %s from %s", describe, current.owner)
            return LeaseLock(objects, key, mine, version, seconds, describe)
    raise JobStoreLockedException(f"The job store '{describe}' is contended by several leaders starting at once")
