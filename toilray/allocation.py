"""Ray across an HPC allocation, for the run that started in it.

A run inside a Slurm, Grid Engine or LSF allocation (``toilray.hpc.detect``) starts a Ray head
on the host its batch script runs on, then a Ray worker on each other host through the
scheduler (srun, qrsh -inherit, blaunch), with the cores, memory and GPUs the allocation gives
there, each with ports and a temporary directory of its own (``toilray.lib.ray_node``). At the
end of the run, failed or not, the workers and then the head are stopped; should the allocation
be cancelled, the scheduler's signal reaches every node, which cleans up after itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import IO

from toilray.hpc import Allocation, HostSlots, Scheduler, SchedulerError
from toilray.lib.ray_node import clean_up, free_port_block

logger = logging.getLogger(__name__)

_STOP_TIMEOUT = 30.0
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class AllocationRayError(SchedulerError):
    """Ray could not be started across the allocation."""


def _temp_root(allocation: Allocation) -> str:
    """Where the run's Ray nodes keep their directories: short, as Ray's socket paths must be."""
    base = os.environ.get("RAY_TMPDIR") or "/tmp"
    user = os.environ.get("USER") or str(os.getuid())
    return os.path.join(base, f"toilray-{user}-{allocation.scheduler}-{allocation.job_id}")


class AllocationRay:
    """The Ray nodes of one run on ``allocation``: ``start_head``, connect, ``start_workers``,
    ``wait_for_nodes``; ``stop`` at the end (safe to call more than once)."""

    def __init__(self, scheduler: Scheduler, allocation: Allocation, start_timeout: float = 300.0) -> None:
        self.scheduler = scheduler
        self.allocation = allocation
        self.start_timeout = start_timeout
        self.temp_root = _temp_root(allocation)
        self._head: subprocess.Popen[bytes] | None = None
        self._workers: list[tuple[HostSlots, subprocess.Popen[bytes], str]] = []
        self._logs: list[IO[bytes]] = []

    def _node_command(self, index: int, host: HostSlots, *role: str) -> list[str]:
        command = [sys.executable, "-m", "toilray.lib.ray_node", f"--temp-dir={self.temp_root}/n{index}",
                   f"--num-cpus={host.cpus}", f"--num-gpus={host.gpus}", *role]
        if host.memory:
            command.append(f"--memory={host.memory}")
        return command

    def _log(self, name: str) -> IO[bytes]:
        os.makedirs(self.temp_root, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (open until stop(): the node writes to it)
            prefix=f"{name}-", suffix=".log", dir=self.temp_root, delete=False)
        self._logs.append(handle)
        return handle

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The nodes import this very toilray, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        return env

    def start_head(self) -> str:
        """Start the head on this host; its GCS address once it answers."""
        host = self.allocation.hosts[0]
        port = free_port_block(1)
        log = self._log("head")
        # stdin: the head stops when this process goes, however it goes.
        self._head = subprocess.Popen(self._node_command(0, host, "--head", f"--port={port}", "--watch-stdin"),
                                      stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=self._env())
        deadline = time.monotonic() + self.start_timeout
        # The GCS port opens well before the head is ready; ray start says when it is.
        while "Ray runtime started" not in self._tail_of(log.name, lines=0):
            if self._head.poll() is not None:
                raise AllocationRayError(f"The Ray head did not start: {self._tail(log)}")
            if time.monotonic() > deadline:
                raise AllocationRayError(f"The Ray head did not start within {self.start_timeout:g} s: "
                                         f"{self._tail(log)}")
            time.sleep(0.2)
        import ray

        address = f"{ray.util.get_node_ip_address()}:{port}"
        logger.info("In %s allocation %s: started a Ray head at %s on %s (%d cores)", self.scheduler.name,
                    self.allocation.job_id, address, host.host, host.cpus)
        return address

    def start_workers(self, address: str) -> None:
        """Start a Ray worker node on every other host of the allocation."""
        for index, host in enumerate(self.allocation.hosts[1:], start=1):
            command = self.scheduler.launch_command(self.allocation, host,
                                                    self._node_command(index, host, f"--address={address}"))
            log = self._log(f"node-{host.host}")
            try:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=self._env())
            except OSError as exc:
                raise AllocationRayError(f"Cannot start a Ray node on {host.host} with {command[0]}: "
                                         f"{exc.strerror}") from None
            self._workers.append((host, process, log.name))

    def wait_for_nodes(self) -> None:
        """Return once every host's Ray node has joined the cluster."""
        import ray

        wanted = len(self.allocation.hosts)
        deadline = time.monotonic() + self.start_timeout
        while True:
            alive = sum(1 for node in ray.nodes() if node.get("Alive"))
            if alive >= wanted:
                break
            for host, process, log in self._workers:
                if process.poll() is not None:
                    raise AllocationRayError(f"The Ray node on {host.host} exited with status {process.returncode}: "
                                             f"{self._tail_of(log)}")
            if time.monotonic() > deadline:
                raise AllocationRayError(f"Only {alive} of the allocation's {wanted} Ray nodes joined within "
                                         f"{self.start_timeout:g} s")
            time.sleep(0.5)
        # The nodes' start-up output is no longer needed for an error message: the files go now (the
        # nodes keep writing to them), so that a cancelled run, which may be killed before its
        # clean-up, leaves nothing behind (each node removes its own directory).
        for handle in self._logs:
            with contextlib.suppress(OSError):
                os.unlink(handle.name)
        cores = sum(h.cpus for h in self.allocation.hosts)
        logger.info("Ray runs on the %d host(s) of the allocation (%d cores)", wanted, cores)

    @staticmethod
    def _end(processes: list[subprocess.Popen[bytes]], deadline: float, signal_first: bool) -> None:
        for process in processes:
            if signal_first and process.poll() is None:
                process.terminate()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
            if process.poll() is None:
                process.kill()
                process.wait()

    def _tail(self, log: IO[bytes]) -> str:
        return self._tail_of(log.name)

    @staticmethod
    def _tail_of(path: str, lines: int = 5) -> str:
        """The last ``lines`` lines of a node's log (0: all of it)."""
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return "(no output)"
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self) -> None:
        """Stop the head; the worker nodes see it go and stop themselves (signalling their
        launchers would not do: srun passes a signal on as SIGKILL, which leaves no time to clean
        up). Launchers still running after a while are ended."""
        deadline = time.monotonic() + _STOP_TIMEOUT
        if self._head is not None:
            self._end([self._head], deadline, signal_first=True)
            logger.debug("Stopped the Ray head")
        self._end([process for _, process, _ in self._workers], deadline, signal_first=False)
        self._workers, self._head = [], None
        for handle in self._logs:
            handle.close()
        self._logs = []
        # Whatever of this run's nodes is left on this host (a node's clean-up cut short).
        clean_up(self.temp_root)
        logger.info("Stopped Ray on the allocation's nodes")
