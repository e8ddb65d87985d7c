"""A real multi-node Ray cluster on this machine: one Linux network namespace and IP per node.

Each node is a ``ray start`` in a namespace of its own (``ip netns``; needs root), wired to the
others through a bridge that lives in a hub namespace, so nothing is added to the namespace the
tests run in and several clusters (other test sessions) never see each other. Nodes share this
machine's file system (a ``file:`` job store under /tmp is seen by all) but talk to each other
only over their own addresses, as machines of a cluster do. Except for one directory,
``NetnsCluster.private``: the worker nodes' Ray processes run in a mount namespace of their own
where an empty tmpfs hides it, so what is put there (a workflow's code, a job store) is on the
head's machine only, as on machines that share no file system. Commands run in a worker's
namespace with ``run`` or ``popen`` (a user's shell on that machine) do see it.

Processes are found through ``ip netns pids`` and signalled by PID, never by name, and a
cluster's namespaces carry this process's PID in their names: teardown (always, also after a
failed test) kills exactly what the cluster started. Ray's ``ray stop`` is never used: it
stops every Ray process of the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.200.0"
HEAD_PORT = 6379
DASHBOARD_PORT = 8265
_RAY = str(Path(sys.executable).parent / "ray")

# How Ray notices a node that went silent (a cut link, no TCP reset; README: "Noticing a silent
# node"). gRPC keepalive pings every 5 s on every process, the driver included: the leader's
# connection to the job's worker fails ~15 s after the cut (Ray's defaults take minutes). The
# GCS's health checks of each raylet (read by the head's GCS only), a check a second and three
# in a row unanswered within 5 s, mark the node dead ~17 s after the cut, so that the rerun is
# not offered to it.
SILENT_NODE_ENV = {
    "RAY_grpc_client_keepalive_time_ms": "5000",
    "RAY_grpc_client_keepalive_timeout_ms": "5000",
    "RAY_grpc_keepalive_time_ms": "5000",
    "RAY_grpc_keepalive_timeout_ms": "5000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "5000",
    "RAY_health_check_failure_threshold": "3",
}


class ClusterError(RuntimeError):
    """The cluster could not be brought up (the message has the failing command's output)."""


@dataclass
class Node:
    name: str  # the network namespace
    ip: str
    cpus: int
    resources: dict[str, float]
    temp_dir: str
    memory: int | None = None  # bytes of Ray's memory resource; None: what Ray finds

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


@dataclass
class NetnsCluster:
    hub: str
    head: Node
    workers: list[Node]
    env: dict[str, str]
    root: Path
    removed: set[str] = field(default_factory=set)

    @property
    def private(self) -> Path:
        """A directory that only the head's processes see (see the module's docstring)."""
        return self.root / "private"

    @property
    def nodes(self) -> list[Node]:
        return [self.head, *self.workers]

    @property
    def address(self) -> str:
        return f"{self.head.ip}:{HEAD_PORT}"

    @property
    def dashboard(self) -> str:
        return f"http://{self.head.ip}:{DASHBOARD_PORT}"

    def run(self, node: Node, argv: Sequence[str], timeout: float, env: dict[str, str] | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``node``'s namespace, with the cluster's environment."""
        return subprocess.run(node.exec_argv(argv), env={**self.env, **(env or {})}, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, node: Node, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
              cwd: str | Path | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return subprocess.Popen(node.exec_argv(argv), env={**self.env, **(env or {})}, cwd=cwd,
                                    stdout=out, stderr=subprocess.STDOUT)

    def alive_node_ips(self) -> set[str]:
        """The addresses of the nodes the head's GCS counts as alive."""
        return set(self.alive_nodes())

    def alive_nodes(self) -> list[str]:
        """The address of each node the head's GCS counts as alive (nodes may share one)."""
        script = ("import json, ray; ray.init(address='auto', log_to_driver=False); "
                  "print(json.dumps([n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']]))")
        done = self.run(self.head, [sys.executable, "-c", script], timeout=120,
                        env={"RAY_ADDRESS": self.address})
        if done.returncode != 0:
            raise ClusterError(f"listing the nodes failed:\n{done.stderr[-3000:]}")
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    def wait_for_nodes(self, ips: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        alive: set[str] = set()
        while time.monotonic() < deadline:
            alive = self.alive_node_ips()
            if alive == ips:
                return
            time.sleep(1)
        raise ClusterError(f"the cluster's alive nodes are {sorted(alive)}, expected {sorted(ips)}")

    def kill_node(self, node: Node) -> None:
        """SIGKILL every process of the node (its raylet, workers, object store): a lost machine."""
        for pid in node.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def cut_link(self, node: Node) -> None:
        """Drop every packet to and from the node without a reset: a machine gone silent."""
        subprocess.run(["ip", "-n", node.name, "link", "set", "eth0", "down"], check=True)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _make_network(hub: str, nodes: list[Node]) -> None:
    _ip("netns", "add", hub)
    _ip("-n", hub, "link", "set", "lo", "up")
    _ip("-n", hub, "link", "add", "br0", "type", "bridge")
    _ip("-n", hub, "link", "set", "br0", "up")
    for index, node in enumerate(nodes, start=1):
        _ip("netns", "add", node.name)
        _ip("-n", node.name, "link", "set", "lo", "up")
        _ip("-n", node.name, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{index}", "netns", hub)
        _ip("-n", node.name, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        _ip("-n", node.name, "link", "set", "eth0", "up")
        # Ray finds its own address through the default route.
        _ip("-n", node.name, "route", "add", "default", "dev", "eth0")
        _ip("-n", hub, "link", "set", f"p{index}", "master", "br0")
        _ip("-n", hub, "link", "set", f"p{index}", "up")


def _teardown(hub: str, nodes: list[Node], root: Path) -> None:
    namespaces = {line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                             text=True).stdout.splitlines() if line.strip()}
    ours = [n for n in nodes if n.name in namespaces]
    for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
        for node in ours:
            for pid in node.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline and any(node.pids() for node in ours):
            time.sleep(0.2)
    for name in [n.name for n in ours] + ([hub] if hub in namespaces else []):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _ray_start(cluster: NetnsCluster, node: Node, head: bool, head_args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    argv = [_RAY, "start", f"--node-ip-address={node.ip}", f"--num-cpus={node.cpus}",
            f"--resources={json.dumps(node.resources)}", "--object-store-memory=150000000",
            f"--temp-dir={node.temp_dir}", "--disable-usage-stats"]
    if node.memory is not None:
        argv.append(f"--memory={node.memory}")
    if head:
        argv += ["--head", f"--port={HEAD_PORT}", "--dashboard-host=0.0.0.0", f"--dashboard-port={DASHBOARD_PORT}",
                 *head_args]
    else:
        argv += [f"--address={cluster.address}"]
        # Its own mount namespace (the processes ray start leaves behind stay in it), where the
        # private directory is an empty tmpfs.
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"', str(cluster.private), *argv]
    return cluster.popen(node, argv, cluster.root / f"{node.name}.start.log")


def _wait_started(cluster: NetnsCluster, node: Node, process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise ClusterError(f"'ray start' on {node.name} did not finish within {timeout:g} s") from None
    if process.returncode != 0:
        log = (cluster.root / f"{node.name}.start.log").read_text()
        raise ClusterError(f"'ray start' on {node.name} failed:\n{log[-3000:]}")


@contextlib.contextmanager
def netns_cluster(node_resources: Sequence[dict[str, float]], cpus: int = 1, extra_env: dict[str, str] | None = None,
                  head_args: Sequence[str] = (), memory: Sequence[int | None] | None = None) -> Iterator[NetnsCluster]:
    """A head and len(node_resources) - 1 workers, node i with ``node_resources[i]`` (and
    ``memory[i]`` bytes of memory, if given); always torn down.

    ``head_args`` go to the head's ``ray start`` (an autoscaler's configuration, say: the nodes a
    fake-multinode autoscaler adds are raylets in the head's namespace, torn down with it)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise ClusterError("a network-namespace cluster needs root and iproute2's 'ip'")
    tag = f"tr{os.getpid() % 100000}"
    # Short: Ray's Unix socket paths under --temp-dir must stay below 108 characters.
    root = Path(tempfile.mkdtemp(prefix="trn", dir="/tmp"))
    names = ["head", *[f"w{i}" for i in range(1, len(node_resources))]]
    memories = list(memory) if memory is not None else [None] * len(node_resources)
    nodes = [Node(f"{tag}{name}", f"{SUBNET}.{10 + i}", cpus, dict(res), str(root / name), mem)
             for i, (name, res, mem) in enumerate(zip(names, node_resources, memories, strict=True))]
    env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1", **SILENT_NODE_ENV, **(extra_env or {})}
    env.pop("RAY_ADDRESS", None)
    if os.path.exists(os.path.expanduser("~/.ray/auth_token")):
        env["RAY_AUTH_MODE"] = "token"  # the CLI does not pick the token up by itself
    hub = f"{tag}hub"
    cluster = NetnsCluster(hub, nodes[0], nodes[1:], env, root)
    try:
        cluster.private.mkdir()
        _make_network(hub, nodes)
        _wait_started(cluster, cluster.head, _ray_start(cluster, cluster.head, True, head_args), timeout=180)
        starting = [(w, _ray_start(cluster, w, head=False)) for w in cluster.workers]
        for worker, process in starting:
            _wait_started(cluster, worker, process, timeout=180)
        cluster.wait_for_nodes({n.ip for n in nodes}, timeout=120)
        yield cluster
    finally:
        _teardown(hub, nodes, root)
