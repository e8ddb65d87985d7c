"""Connecting to Ray: an embedded local instance, or a running cluster."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray

from toilray import hpc_schedulers, local_ray, ray_choice
from toilray.allocation import AllocationRay
from toilray.elastic import ElasticSettings, ElasticWorkers
from toilray.exceptions import AutoscalingConfigError, RayConnectionError
from toilray.hpc import Allocation, HostSlots
from toilray.lib import ray_reaper
from toilray.lib.conversions import readable_size
from toilray.lib.ray_node import ray_memory
from toilray.requirements import Requirements

logger = logging.getLogger(__name__)


# Custom resources a cluster configuration gives its nodes to say what kind they are
# (see cluster-configs/): spot/preemptible nodes, and on-demand ones.
PREEMPTIBLE_RESOURCE = "preemptible"
ON_DEMAND_RESOURCE = "on_demand"
# A custom resource a cluster configuration gives a node to say how many bytes its --workDir's
# file system holds (Ray knows nothing of disks); a node without it is not checked for disk,
# except the one the leader runs on, which measures its own.
DISK_RESOURCE = "disk_bytes"
_A_LITTLE = 0.001


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    cpus: float
    memory: float
    gpus: float
    preemptible: bool | None = None  # None: the node is not marked either way
    disk: float | None = None  # bytes; None: not known, so not checked


@dataclass(frozen=True, slots=True)
class NodeType:
    """A kind of node the cluster's autoscaler may add, with what each such node offers."""

    name: str
    capacity: NodeCapacity


# Where 'ray up' puts the cluster's configuration on the head node.
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


def autoscaler_node_types(path: str | None) -> list[NodeType]:
    """The worker node types of a Ray autoscaler configuration (``path``, else 'ray up''s copy on
    the head when there is one); none without a configuration. A type's memory and disk count as
    unknown (not checked) unless its ``resources`` give them, as cloud node types rarely do."""
    if path is None:
        path = os.path.expanduser(BOOTSTRAP_CONFIG)
        if not os.path.exists(path):
            return []
    import yaml

    try:
        with open(path) as handle:
            config = yaml.safe_load(handle)
        available = config["available_node_types"]
        head = config.get("head_node_type")
        types = []
        for name, spec in available.items():
            if name == head or spec.get("max_workers", config.get("max_workers", 1)) == 0:
                continue
            res = spec.get("resources") or {}
            marked = PREEMPTIBLE_RESOURCE in res or ON_DEMAND_RESOURCE in res
            types.append(NodeType(name, NodeCapacity(
                float(res.get("CPU", 0)), float(res.get("memory", math.inf)), float(res.get("GPU", 0)),
                (PREEMPTIBLE_RESOURCE in res) if marked else None, res.get(DISK_RESOURCE))))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise AutoscalingConfigError(f"Cannot read the autoscaler's node types from {path}: "
                                     f"{type(exc).__name__}: {exc}") from None
    return types


def why_no_node_type_fits(req: Requirements, types: list[NodeType]) -> str | None:
    """None if a node of one of ``types`` could run a job with ``req``; otherwise why not."""
    problem = why_unschedulable(req, [t.capacity for t in types])
    if problem is None:
        return None
    largest = max(types, key=lambda t: (t.capacity.cpus, t.capacity.memory, t.capacity.gpus, _disk(t.capacity)))
    return (f"{problem.replace('the largest node', 'the largest node type the autoscaler may add')}; "
            f"the largest node type is {largest.name}")


def running_address(address: str | None, embedded: bool = False) -> str | None:
    """The Ray a run connects to without starting one: ``address``, else RAY_ADDRESS, else the
    managed local Ray if it runs (unless ``embedded``); None when the run has to start a Ray."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None and not embedded:
        local = local_ray.running()
        address = local.address if local is not None else None
    return address


def _host_and_port(address: str) -> tuple[str, int] | None:
    """The host and port of a 'host:port' or 'ray://host:port' address; None for 'auto' and the like."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _unreachable(address: str, why: str) -> RayConnectionError:
    return RayConnectionError(
        f"Cannot connect to Ray at {address}: {why}. Check that a Ray cluster is running there "
        f"('ray status --address {address}') and that --rayAddress or RAY_ADDRESS names its head's GCS "
        "address (port 6379 unless it was started with another --port)"
    )


# A client's HTTP/2 connection preface and an empty SETTINGS frame: a gRPC server (a Ray
# head's GCS is one) answers with a SETTINGS frame of its own.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_HTTP2_SETTINGS = 4


def _probe(address: str, timeout: float) -> None:
    """Fail at once when no gRPC server listens at ``address``: ray.init would retry for minutes."""
    where = _host_and_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout) as connection:
            if address.startswith("ray://") or os.environ.get("RAY_USE_TLS", "0") not in ("0", ""):
                return  # Ray Client's own protocol, or TLS: nothing more to check before ray.init
            connection.sendall(_HTTP2_PREFACE)
            answer = connection.recv(9)
    except TimeoutError:
        raise _unreachable(address, f"no answer within {timeout:g} s (--rayConnectTimeout)") from None
    except OSError as exc:
        raise _unreachable(address, (exc.strerror or str(exc)).lower()) from None
    if len(answer) < 4 or answer[3] != _HTTP2_SETTINGS:
        raise _unreachable(address, "something listens there but it is not a Ray head (no gRPC answer)")


@contextlib.contextmanager
def _stderr_held(show: bool) -> Iterator[None]:
    """Hold back what is written to file descriptor 2 (Ray's C++ core writes there directly),
    and pass it on afterwards only if ``show``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if show:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def _connect(address: str, timeout: float, kwargs: dict[str, Any], log_level: str) -> None:
    """``ray.init`` on a running cluster, given up after ``timeout`` seconds.

    Something that accepts connections but is not a Ray head keeps ray.init retrying far
    longer than any deadline of ours, so it runs in a daemon thread that is abandoned then;
    Ray's warnings while it tries are shown only at --logLevel DEBUG.
    """
    _probe(address, timeout)
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, **kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=connect, name="toilray-ray-connect", daemon=True)
    with _stderr_held(log_level == "DEBUG"):
        thread.start()
        thread.join(timeout)
    if thread.is_alive():
        raise _unreachable(address, f"it accepts connections but did not answer as a Ray cluster within "
                                    f"{timeout:g} s (--rayConnectTimeout)")
    if failure:
        first_line = (str(failure[0]).strip().splitlines() or [type(failure[0]).__name__])[0]
        raise _unreachable(address, first_line) from None


def _quiet_ray_banners(log_level: str) -> None:
    """Ray announces token authentication on every start as a warning; it is news only when
    the log level asks for everything."""
    level = logging.DEBUG if log_level == "DEBUG" else logging.ERROR
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(level)


def _in_words(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:g} minute{'s' * (minutes != 1)}" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


def _use_token_auth() -> None:
    """Make this process a token-authenticating Ray client, as the managed local Ray expects (it
    started Ray with Ray's defaults). Ray reads the mode from the environment once, at import:
    Ray's own switch for a process that starts a local cluster re-reads it (_enable_token_auth)."""
    if "RAY_AUTH_MODE" not in os.environ:
        from ray._raylet import Config  # type: ignore[attr-defined]

        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")


def _addons_of_loaded_libraries(context: Any) -> None:
    """Ray's serializers for pydantic, starlette and pyarrow types, for those of the three this
    process has imported (see ``_skip_unused_serialization_addons``)."""
    # Each of Ray's modules imports its library: only those of loaded libraries are imported.
    if "pydantic" in sys.modules:
        from ray._common.pydantic_compat import register_pydantic_serializers

        register_pydantic_serializers(context)
    if "starlette" in sys.modules:
        from ray.util.serialization_addons import register_starlette_serializer

        register_starlette_serializer(context)
    if "pyarrow" in sys.modules:
        from ray._private.arrow_serialization import _register_custom_datasets_serializers

        _register_custom_datasets_serializers(context)


def _skip_unused_serialization_addons() -> None:
    """Keep the leader from importing pydantic, starlette and pyarrow (with numpy) on its first
    ``ray.put``: Ray's serialization context imports each one that is installed, to register
    serializers of its types, 0.3 s or more of every run. What the leader sends through Ray is
    toilray's own records (job bodies and values are bytes by then), never such objects; the
    serializers of a library the process has loaded (a script's own import) are still registered."""
    from ray.util import serialization_addons

    serialization_addons.apply = _addons_of_loaded_libraries


def _disconnect_at_exit() -> None:
    """Leave Ray without its exit handler's pause: that handler sleeps half a second so that
    workers' log lines reach the terminal, and toilray never forwards them (log_to_driver=False).
    Registered after Ray's handler, so it runs first; Ray's then has nothing left to do."""
    if ray.is_initialized():
        ray.shutdown()


_LIBC = ctypes.CDLL(None)  # this process's C library (the interpreter's own)


def _leave_ray_at_exit() -> None:
    """End this process, when it exits, without a driver's teardown of a Ray it did not start.

    That teardown waits for Ray's gRPC polling threads, which look for a shutdown every 250 ms:
    about 0.3 s of every run. Instead, the process ends (``_exit``, with the status Python exits
    with) as soon as Python has finalized, before Ray's C++ exit handler, which cannot run on a
    driver that did not disconnect. The raylet sees the driver's connection close, as for any
    driver that ends, and ends its job's workers. Where the C library has no ``on_exit`` (not
    glibc), Ray is left at exit as before."""
    if not hasattr(_LIBC, "on_exit"):
        atexit.unregister(_disconnect_at_exit)
        atexit.register(_disconnect_at_exit)
        return
    atexit.unregister(ray.shutdown)
    # Registered after Ray's own (at each connection: Ray may register its handler again), so it runs
    # first. It skips the C library's flush of its streams, done here once (Python has flushed its own).
    _LIBC.on_exit(_LIBC._exit, None)
    atexit.unregister(_LIBC.fflush)
    atexit.register(_LIBC.fflush, None)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _interrupt_on_sigterm() -> bool:
    """Make SIGTERM, what a scheduler sends on cancel and at the time limit, end the run as Ctrl-C
    does (the workflow can be resumed with --restart) after stopping its Ray, instead of killing
    this process on the spot; whether it was set (and is to be undone after the run)."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
        return True
    return False


class RayConnection:
    """Ray for one workflow run: the cluster at ``address`` (or RAY_ADDRESS); else, inside an HPC
    allocation, a Ray of the run's own across the allocation's hosts (``toilray.allocation``),
    stopped by ``shutdown``; else the managed local Ray (``toilray.local_ray``), started if none
    runs, which this process stays attached to until it exits; else, with ``embedded`` or when the
    managed Ray runs other code and is busy, a Ray of this run's own. Shuts down only an instance
    it started itself; a connection is left at exit without Ray's exit pause.

    On a running cluster (``address``), ``py_modules`` (local paths: ``toilray.deployment``) go
    to every worker of the run through Ray's runtime_env, so that nodes that do not share this
    machine's file system import the workflow's code too; ``shipped_code`` says they did.

    With ``elastic`` (``--batchSystem slurm|grid_engine|lsf``), the run's Ray is a head here with
    no cores and worker nodes that come and go as scheduler jobs (``toilray.elastic``);
    ``node_types`` is then the worker jobs' shape, which the leader places jobs by."""

    def __init__(self, address: str | None, timeout: float = 15.0, log_level: str = "INFO", embedded: bool = False,
                 idle_timeout: float = local_ray.DEFAULT_IDLE_TIMEOUT, py_modules: list[str] | None = None,
                 elastic: ElasticSettings | None = None) -> None:
        self.started_here = False
        self.shipped_code = False
        self.on_cluster = False
        self.node_types: list[NodeType] = []
        self._allocation_ray: AllocationRay | None = None
        self._elastic: ElasticWorkers | None = None
        self._sigterm_set = False
        # Whether the workers start from this process's environment; those of the shared local
        # Ray were started by its server, so the run ships its environment to them instead.
        self.workers_inherit_environment = True
        if ray.is_initialized():
            return
        _quiet_ray_banners(log_level)
        _skip_unused_serialization_addons()
        choice = ray_choice.choose(address, embedded, elastic is not None)
        address = choice.address
        kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if elastic is not None:
            self._start_elastic(elastic, timeout, kwargs, log_level)
            return
        # Inside an HPC allocation, the run's Ray spans the allocation (toilray.allocation).
        if choice.allocated is not None:
            self._start_on_allocation(AllocationRay(*choice.allocated), timeout, kwargs, log_level)
            return
        attachment = local_ray.attach(idle_timeout) if choice.kind == "managed" else None
        if attachment is not None:
            local = attachment.instance
            if attachment.started:
                stops = "runs until" if local.idle_timeout is None else \
                    f"stops after {_in_words(local.idle_timeout)} without a workflow, or at"
                logger.info("Started a local Ray for toilray runs at %s; it %s 'toilray local-ray stop'",
                            local.address, stops)
            else:
                logger.info("Using the local Ray instance at %s (toilray local-ray)", local.address)
            _use_token_auth()
            # Not a runtime_env: Ray then sets up an environment per run before its first worker
            # starts, about a second of every run.
            self.workers_inherit_environment = False
            address = local.address
        if address:
            if py_modules and attachment is None:
                kwargs["runtime_env"] = {"py_modules": py_modules}
                self.shipped_code = True
            self.on_cluster = attachment is None
            _connect(address, timeout, kwargs, log_level)
            _leave_ray_at_exit()
        else:
            context = ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **kwargs)
            self.started_here = True
            # Lives as long as this process: its end ends whatever is left of this Ray. (ray.init
            # returns a RayContext here; its annotation says BaseContext, which has no address_info.)
            self._reaper = ray_reaper.start(context.address_info["session_dir"])  # type: ignore[attr-defined]

    def _start_on_allocation(self, nodes: AllocationRay, timeout: float, kwargs: dict[str, Any],
                             log_level: str) -> None:
        """Ray across the allocation's hosts, stopped by ``shutdown`` (or here, if it fails)."""
        self._allocation_ray = nodes
        try:
            address = nodes.start_head()
            _use_token_auth()  # the nodes run with Ray's defaults, as the managed local Ray does
            # Connect before the other nodes start: several may share this host's IP address, and
            # the driver must attach to the head's. The head is known to be coming up: under load
            # it may take longer to answer than --rayConnectTimeout allows a cluster said to run.
            _connect(address, max(timeout, nodes.start_timeout), kwargs, log_level)
            nodes.start_workers(address)
            nodes.wait_for_nodes()
        except BaseException:
            self.shutdown()
            raise
        atexit.register(self.shutdown)
        self._sigterm_set = _interrupt_on_sigterm()

    def _start_elastic(self, settings: ElasticSettings, timeout: float, kwargs: dict[str, Any],
                       log_level: str) -> None:
        """A head here that runs no job, and the loop that adds and cancels worker jobs."""
        scheduler = hpc_schedulers.by_name(settings.scheduler)
        run = f"e{uuid.uuid4().hex[:7]}"  # short: Ray's socket paths must stay under 108 bytes
        head = AllocationRay(scheduler, Allocation(scheduler.name, run, (HostSlots(socket.gethostname(), 0),)))
        self._allocation_ray = head
        try:
            address = head.start_head()
            _use_token_auth()  # as for an allocation's nodes
            _connect(address, max(timeout, head.start_timeout), kwargs, log_level)
            self._elastic = ElasticWorkers(settings, scheduler, address, head.temp_root,
                                           os.path.abspath(os.path.join("toilray-hpc", run)))
            self._elastic.start()
        except BaseException:
            self.shutdown()
            raise
        shape = settings.shape
        memory = math.inf if shape.memory is None else float(ray_memory(shape.memory))
        self.node_types = [NodeType(f"the {scheduler.name} worker job of --nodeCores/--nodeMemory/"
                                    f"--nodeAccelerators ({shape.describe()})",
                                    NodeCapacity(float(shape.cpus), memory, float(shape.gpus)))]
        atexit.register(self.shutdown)
        self._sigterm_set = _interrupt_on_sigterm()
        logger.info("Elastic %s: worker jobs of up to %s each, at most %d, cancelled after %g s idle",
                    scheduler.name, shape.describe(), settings.max_nodes, settings.idle_time)

    def nodes(self, work_dir: str) -> list[NodeCapacity]:
        """The live nodes; the disk of this process's own node is the size of ``work_dir``'s
        file system, where its jobs keep their files."""
        here = ray.get_runtime_context().get_node_id()
        capacities = []
        for node in ray.nodes():
            if not node.get("Alive", True):
                continue
            res = node.get("Resources", {})
            marked = PREEMPTIBLE_RESOURCE in res or ON_DEMAND_RESOURCE in res
            disk = res.get(DISK_RESOURCE)
            if disk is None and node.get("NodeID") == here:
                disk = float(shutil.disk_usage(work_dir).total)
            capacities.append(NodeCapacity(res.get("CPU", 0.0), res.get("memory", 0.0), res.get("GPU", 0.0),
                                           (PREEMPTIBLE_RESOURCE in res) if marked else None, disk))
        return capacities

    def nodes_where_false(self, check: Callable[..., bool], *args: Any, timeout: float = 120.0) -> list[str]:
        """The addresses of the other live nodes on which ``check(*args)`` returned False (run
        there as a task that takes no CPU); a node that has not answered within ``timeout``
        seconds (busy starting workers, say) is not counted."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        others = [node for node in ray.nodes() if node.get("Alive", True) and node["NodeID"] != here]
        if not others:
            return []
        remote = ray.remote(num_cpus=0, max_retries=0)(check)
        asked = {remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                 .remote(*args): node["NodeManagerAddress"] for node in others}
        answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=timeout)
        failing = []
        for ref in answered:
            try:
                if not ray.get(ref):
                    failing.append(asked[ref])
            except ray.exceptions.RayError:
                continue  # the node went away meanwhile
        return sorted(failing)

    def node_ip(self) -> str:
        """This process's address as the Ray cluster sees it (where workers can reach us)."""
        return ray.util.get_node_ip_address()

    def total_cpus(self) -> float:
        return float(ray.cluster_resources().get("CPU", 1.0))

    def raise_if_failed(self) -> None:
        """Raise what makes the run's own nodes impossible to get (elastic: the scheduler
        refuses every worker job), so the run ends instead of waiting for them."""
        if self._elastic is not None and self._elastic.failure is not None:
            raise self._elastic.failure

    def shutdown(self) -> None:
        if self.started_here and ray.is_initialized():
            ray.shutdown()
            self.started_here = False
        if self._elastic is not None:
            workers, self._elastic = self._elastic, None
            workers.stop()
        if self._allocation_ray is not None:
            nodes, self._allocation_ray = self._allocation_ray, None
            if ray.is_initialized():
                ray.shutdown()
            nodes.stop()
            if self._sigterm_set:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self._sigterm_set = False


def _warm_worker(prepare: Callable[[], None]) -> None:
    prepare()


def warm_up(address: str | None, timeout: float, log_level: str, embedded: bool, idle_timeout: float,
            prepare: Callable[[], None]) -> RayConnection | None:
    """Connect to a running Ray and start a worker that imports what the run's jobs need
    (``prepare``, a module-level function that imports ``toilray.worker`` too) while the front end loads its document.

    Ray starts fresh worker processes for every driver; started this early, the first job
    finds one ready instead of waiting a second or more for it. With no Ray running this does
    nothing: the run starts (or attaches to) a Ray only once its input is known to be good, so
    a mistake is reported at once. The run's ``Toil`` then uses this connection.
    """
    if running_address(address, embedded) is None:
        return None
    connection = RayConnection(address, timeout, log_level, embedded, idle_timeout)
    ray.remote(num_cpus=0.01, max_retries=0)(_warm_worker).remote(prepare)
    return connection


def placement_resources(req: Requirements, nodes: list[NodeCapacity]) -> dict[str, float]:
    """Custom resources that keep a job off nodes it must not use.

    As in Toil, a preemptible job may run anywhere, and a job that is not preemptible must
    never land on a preemptible (spot) node. On a cluster whose nodes carry no marks, any
    node will do.
    """
    if req.preemptible or not any(n.preemptible is not None for n in nodes):
        return {}
    return {ON_DEMAND_RESOURCE: _A_LITTLE}


def _allowed(req: Requirements, node: NodeCapacity, marked: bool) -> bool:
    return req.preemptible or not marked or node.preemptible is False


def why_unschedulable(req: Requirements, nodes: list[NodeCapacity]) -> str | None:
    """None if some node can run a job with ``req``; otherwise what is missing, in words."""
    marked = any(n.preemptible is not None for n in nodes)
    allowed = [n for n in nodes if _allowed(req, n, marked)]
    if marked and nodes and not allowed:
        return "it is not preemptible and every node of the Ray cluster is marked preemptible"
    nodes = allowed
    if any(req.cores <= n.cpus and req.memory <= n.memory and req.gpus <= n.gpus and req.disk <= _disk(n)
           for n in nodes):
        return None
    if not nodes:
        return "the Ray cluster has no live nodes"
    biggest = max(nodes, key=lambda n: (n.cpus, n.memory, n.gpus, _disk(n)))
    problems = []
    if req.cores > max(n.cpus for n in nodes):
        problems.append(f"{req.cores:g} cores (the largest node has {max(n.cpus for n in nodes):g})")
    if req.memory > max(n.memory for n in nodes):
        problems.append(f"{readable_size(req.memory)} of memory "
                        f"(the largest node has {readable_size(max(n.memory for n in nodes))})")
    if req.gpus > max(n.gpus for n in nodes):
        problems.append(f"{req.gpus:g} accelerators (the largest node has {max(n.gpus for n in nodes):g})")
    if req.disk > max(_disk(n) for n in nodes):
        problems.append(f"{readable_size(req.disk)} of disk "
                        f"(the largest node has {readable_size(max(_disk(n) for n in nodes))} for --workDir)")
    if not problems:
        disk = "" if biggest.disk is None else f", {readable_size(biggest.disk)} of disk"
        problems.append(f"{req.describe()} on one node (the largest offers {biggest.cpus:g} cores, "
                        f"{readable_size(biggest.memory)} of memory{disk}, {biggest.gpus:g} accelerators)")
    return "it asks for " + " and ".join(problems)


def _disk(node: NodeCapacity) -> float:
    return math.inf if node.disk is None else node.disk
