"""One Ray node of an HPC allocation, and nothing left of it when it ends.

Run on each host of an allocation (``python -m toilray.lib.ray_node``, through srun, qrsh or
blaunch): it starts ``ray start --block`` with ports and a temporary directory of its own (several
Ray nodes may share a host and its IP address, as on a shared cluster node). When it is told to
stop (SIGTERM, SIGINT or SIGHUP, which the schedulers send on cancel or at the time limit), or the
process that started it goes (end of file on stdin, with ``--watch-stdin``), or for a worker node
the head goes, or Ray exits, it stops Ray, kills whatever process still uses the node's directory,
and removes the directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from toilray.lib.ray_reaper import session_processes

# Ports a node needs besides its worker port range: node manager, object manager, the dashboard
# agent's two, metrics export, the runtime-env agent, and for a head Ray Client's and the
# dashboard's (Ray runs a dashboard process for its job API even without the dashboard).
_NAMED_PORTS = 8
_WORKER_PORTS = 64
_PORT_RANGE = (20000, 60000)
# A worker node stops once the head has not answered this many times in a row, this far apart.
_HEAD_POLL = 1.0
_HEAD_MISSES = 3
# The object store takes its share of a node's memory, as Ray does by default; jobs get the rest.
_OBJECT_STORE_SHARE = 0.3
# Set for the node's Ray processes: a job's worker process leaves SIGTERM to this process, which
# then ends the whole node at once (a scheduler signals every process of a cancelled job, and a
# worker that died first would look to the leader like a failed job rather than a lost node).
NODE_OWNS_SIGTERM = "TOILRAY_NODE_OWNS_SIGTERM"


def ray_memory(total: int) -> int:
    """The memory Ray gives jobs on a node of ``total`` bytes (the rest is the object store's)."""
    return int(total * (1 - _OBJECT_STORE_SHARE))


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def free_port_block(size: int, avoid: set[int] | None = None) -> int:
    """The first port of ``size`` consecutive ports that are free on this host now."""
    generator = random.Random(f"{os.getpid()}-{time.time_ns()}")
    for _ in range(200):
        first = generator.randrange(_PORT_RANGE[0], _PORT_RANGE[1] - size)
        block = range(first, first + size)
        if not (avoid and avoid.intersection(block)) and all(_free(p) for p in block):
            return first
    raise OSError(f"no {size} consecutive free ports on this host")


def ray_start_command(args: argparse.Namespace) -> list[str]:
    """``ray start --block`` for this node, on a port block of its own."""
    avoid = {args.port} if args.port else None
    first = free_port_block(_NAMED_PORTS + _WORKER_PORTS, avoid)
    named = iter(range(first, first + _NAMED_PORTS))
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    command = [ray, "start", "--block", "--disable-usage-stats", f"--temp-dir={args.temp_dir}",
               f"--num-cpus={args.num_cpus}", f"--num-gpus={args.num_gpus}",
               f"--node-manager-port={next(named)}", f"--object-manager-port={next(named)}",
               f"--dashboard-agent-listen-port={next(named)}", f"--dashboard-agent-grpc-port={next(named)}",
               f"--metrics-export-port={next(named)}", f"--runtime-env-agent-port={next(named)}",
               f"--min-worker-port={first + _NAMED_PORTS}",
               f"--max-worker-port={first + _NAMED_PORTS + _WORKER_PORTS - 1}"]
    if args.head:
        command += ["--head", f"--port={args.port}", f"--ray-client-server-port={next(named)}",
                    f"--dashboard-port={next(named)}", "--include-dashboard=false"]
    else:
        command.append(f"--address={args.address}")
    if args.memory:
        command += [f"--memory={ray_memory(args.memory)}",
                    f"--object-store-memory={int(args.memory * _OBJECT_STORE_SHARE)}"]
    if args.labels:
        command.append(f"--labels={args.labels}")
    return command


def clean_up(temp_dir: str, spare: int | None = None) -> None:
    """Kill this user's processes that still use ``temp_dir`` (but ``spare``) and remove it."""
    for process in session_processes(temp_dir, spare):
        with contextlib.suppress(Exception):
            process.kill()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _watch_head(address: str, stop: threading.Event) -> None:
    """Set ``stop`` once the head's GCS port stops accepting connections: the run has ended (the
    leader stops the head first), and a worker node need not wait for a signal the scheduler may
    send as SIGKILL (srun does, when it is itself signalled)."""
    host, _, port = address.rpartition(":")
    misses = 0
    while not stop.wait(_HEAD_POLL):
        try:
            with socket.create_connection((host, int(port)), timeout=_HEAD_POLL * 2):
                misses = 0
        except OSError:
            misses += 1
            if misses >= _HEAD_MISSES:
                stop.set()


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, on_signal)
    if args.watch_stdin:
        def watch() -> None:
            # The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read makes
            # the interpreter's exit a fatal error, whose output hides why Ray stopped.
            while os.read(0, 4096):  # b"" once the starting process's end of the pipe closes
                pass
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
    if args.address:
        threading.Thread(target=_watch_head, args=(args.address, stop), daemon=True).start()
    os.makedirs(args.temp_dir, exist_ok=True)
    # A session of its own: every process of the node is then in one process group to end.
    # TOILRAY_HPC=0: a workflow run by a job on this node is not the allocation's own run.
    ray = subprocess.Popen(ray_start_command(args), stdin=subprocess.DEVNULL, start_new_session=True,
                           env={**os.environ, "TOILRAY_HPC": "0", NODE_OWNS_SIGTERM: "1"})
    try:
        while not stop.is_set() and ray.poll() is None:
            stop.wait(0.5)
    finally:
        # The run is over: nothing to drain (ray start would on SIGTERM, for 30 s); clean_up finds
        # any process that left the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ray.pid, signal.SIGKILL)
        ray.kill()
        ray.wait()
        # The process that started this one may be the run's leader, a Ray driver with its log
        # files in the head's directory: never a victim.
        clean_up(args.temp_dir, spare=os.getppid())
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(args.temp_dir))  # the run's directory, by the last node out
    return 0 if stop.is_set() else (ray.returncode or 1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m toilray.lib.ray_node")
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--head", action="store_true")
    parser.add_argument("--port", type=int, default=None, help="The head's GCS port")
    parser.add_argument("--address", default=None, help="The head's GCS address (for a worker node)")
    parser.add_argument("--num-cpus", type=int, required=True)
    parser.add_argument("--num-gpus", type=int, default=0)
    parser.add_argument("--memory", type=int, default=None, help="Bytes for this node (default: Ray measures)")
    parser.add_argument("--labels", default=None, help="Ray node labels, key=value[,key=value]")
    parser.add_argument("--watch-stdin", action="store_true")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
