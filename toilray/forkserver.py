"""The CWL and WDL runners' commands, started as forks of a process that is warm already.

Every ``toilray-cwl-runner`` or ``toilray-wdl-runner`` run pays for its imports (cwltool or
miniwdl, Ray, toilray) and its language's set-up (cwltool parses its CWL schemas) before any
work: about 0.6 s of CPU, most of a small run's leader. A *fork server* has done all that once.
A command connects to it over a Unix socket and hands over its argument vector, working
directory, environment, umask and its standard streams (the file descriptors themselves); the
server forks a child, which becomes the run's leader: the same code as a run in the command's
own process, with the command's streams, directory, environment and arguments. The command
waits for the child's exit status and exits with it. Ctrl-C and the signals a scheduler sends
(SIGINT, SIGTERM, SIGHUP) reach the child through the command; a command that is killed
outright (``kill -9``) takes its child with it (the server sends it SIGTERM).

A server serves only commands that would run the very same code in the very same conditions:
its socket's name is a digest of the state directory (``$TOILRAY_HOME``), the user and groups,
toilray's code stamp (``toilray.installation.code_stamp``), the interpreter with its ``sys.path``
and flags, the resource limits, the control groups and namespaces, and the environment variables
read when modules are imported (``PYTHON*``, ``RAY_*`` but ``RAY_ADDRESS`` and ``RAY_JOB_ID``, which
a server warms without, ``TOILRAY_*``, ``LD_*``, the temporary directory's). A command that finds
no server for its digest starts one in the background and runs in its own process, as it would
without. A server warms the front end of the command that started it before it serves, and the
others once no request has come for a moment (not while Ray and its first run start, when they
would compete for the CPU); a command for a front end still cold does its own imports. It stops
once it has been idle (no run, no request) for ``IDLE_TIMEOUT``
seconds. The socket is in Linux's abstract namespace (nothing to leave behind when a server is
killed), and the server serves only its own user (the peer's credentials; a command, likewise,
talks only to its own user's server).
``toilray local-ray stop`` stops the servers of its state directory too: each takes no new run
then and exits when its runs have ended. ``TOILRAY_FORKSERVER=0`` turns it all off.

The managed local Ray's workers are commands of a third front end (``toilray.ray_workers``), each
started by Ray through a launcher; they wait for a server that is warming up instead.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toilray.exceptions import INTERRUPTED, report
from toilray.installation import code_stamp, state_dir
from toilray.lib.processes import pid_alive

SWITCH = "TOILRAY_FORKSERVER"
IDLE_TIMEOUT = 600.0
# The front ends a server has warm, each a module with preload() and run().
# A front end may also say how its child is to end when its command is gone (SIGNAL_WHEN_COMMAND_GONE,
# SIGTERM by default), whether the child leads a process group of its own (OWN_PROCESS_GROUP), and
# whether its commands wait for a server that is warming up rather than run in their own processes
# (WAIT_FOR_SERVER).
FRONT_ENDS = ("toilray.cwl.main", "toilray.wdl.main", "toilray.ray_workers")
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_HEADER = struct.Struct("!I")
_STREAMS = 3  # stdin, stdout, stderr
_LOCK = ".lock"
_LOG_LIMIT = 1 << 20
_LOGGED_COMMAND = 200  # characters of a command's line in the log (a Ray worker's runs to about 700)
# How long a command of a front end that waits for a warm server (WAIT_FOR_SERVER) waits at most
# (Ray kills a worker that has not registered within a minute), and how often it looks.
_WARM_UP_LIMIT = 30.0
_WARM_UP_POLL = 0.05
# A server warms its other front ends once no request or event came for _COLD_QUIET seconds, or at the
# latest _COLD_LIMIT seconds after it began to serve: not while Ray starts and its first run begins.
_COLD_QUIET = 2.0
_COLD_LIMIT = 10.0
# Variables that differ from command to command of one server (ray.init's cluster, a Ray worker's job), so
# left out of the digest: a server warms up without them, and each child has its command's.
_PER_COMMAND = ("RAY_ADDRESS", "RAY_JOB_ID")
_NO_JOB = "ffffffff"  # Ray's nil job ID, which its prestarted workers have
# Set in a server's child: the run it does is the command's own, not one to hand on again.
_in_child = False


def enabled() -> bool:
    return os.environ.get(SWITCH, "1") != "0"


def _imported_at_start(name: str) -> bool:
    """Whether a variable may be read when a module is imported (so a warm process read it already)."""
    if name in _PER_COMMAND:
        return False
    # LANG and LC_*: the interpreter's standard streams take their encoding from them when it starts.
    return (name.startswith(("PYTHON", "RAY_", "TOILRAY_", "LD_", "LC_"))
            or name in ("TMPDIR", "TEMP", "TMP", "LANG"))


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _namespaces() -> list[str]:
    found = []
    for kind in ("mnt", "pid", "net", "user", "cgroup"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/self/ns/{kind}"))
    return found


def _records() -> str:
    """Where each running server keeps a file named by its digest, holding its process id."""
    return os.path.join(state_dir(), "forkservers")


def socket_name() -> str:
    """The abstract socket of the server for a command in this process's conditions."""
    conditions = {
        "home": os.path.abspath(state_dir()),
        "user": [os.getuid(), os.getgid(), sorted(os.getgroups())],
        "code": code_stamp(),
        "python": [os.path.abspath(sys.executable), sys.path, list(sys.flags)],
        "limits": [resource.getrlimit(getattr(resource, name)) for name in dir(resource)
                   if name.startswith("RLIMIT_")],
        "cgroup": _read("/proc/self/cgroup"),
        "namespaces": _namespaces(),
        "environment": sorted((k, v) for k, v in os.environ.items() if _imported_at_start(k)),
    }
    digest = hashlib.sha256(json.dumps(conditions, sort_keys=True).encode()).hexdigest()[:32]
    return f"\0toilray-forkserver-{digest}"


class _Channel:
    """Length-prefixed JSON messages over a stream socket, file descriptors riding on the request.

    A read may bring more than one message (the server's "forked" and "exited" answers to a run
    that ends at once arrive together): what follows the message returned is kept for the next."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._data = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        payload = _HEADER.pack(len(data)) + data
        if fds:
            sent = self.sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            payload = payload[sent:]
        if payload:
            self.sock.sendall(payload)

    def holds_message(self) -> bool:
        return (len(self._data) >= _HEADER.size
                and len(self._data) >= _HEADER.size + _HEADER.unpack_from(self._data)[0])

    def receive(self) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message and the file descriptors that came with it; None at the end of the stream."""
        fds = array.array("i")
        try:
            while not self.holds_message():
                data, ancillary, _flags, _address = self.sock.recvmsg(65536,
                                                                      socket.CMSG_SPACE(_STREAMS * fds.itemsize))
                for level, kind, items in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(items[:len(items) - len(items) % fds.itemsize])
                if not data:
                    break
                self._data += data
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        if not self.holds_message():  # the stream ended first
            for fd in fds:
                os.close(fd)
            return None, []
        (size,) = _HEADER.unpack_from(self._data)
        message = json.loads(self._data[_HEADER.size:_HEADER.size + size])
        self._data = self._data[_HEADER.size + size:]
        return message, list(fds)


# -- the command's side ------------------------------------------------------------------------

def run_forked(module: str) -> None:
    """Run front end ``module``'s command in a warm server's child and exit with its status.

    Returns (having done nothing else) where no server can take it: the command then runs in
    its own process, and starts a server for the commands to come."""
    if not enabled() or _in_child:
        return
    name = socket_name()
    sock = _connect(name, module, getattr(importlib.import_module(module), "WAIT_FOR_SERVER", False))
    if sock is None:
        return
    if _peer_uid(sock) != os.getuid():
        sock.close()  # someone else's socket under this name: not to be handed this command's streams
        return
    server = _Channel(sock)
    request = {"module": module, "argv": sys.argv, "cwd": os.getcwd(), "environment": dict(os.environ),
               "umask": _umask()}
    # Held until the child is known, then passed on to it (a Ctrl-C now must not end this command alone).
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    try:
        server.send(request, list(range(_STREAMS)))
        answer, _ = server.receive()
    except OSError:
        answer = None  # a closed standard stream, or the server is stopping
    if answer is None or "pid" not in answer:
        server.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        return
    child = answer["pid"]

    def forward(received: int, _frame: object) -> None:
        with contextlib.suppress(OSError):  # the server is gone: the end of the stream says so
            server.send({"signal": received})

    for number in _FORWARDED:
        signal.signal(number, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    status: int | None = None
    while status is None:
        message, _ = server.receive()
        if message is None:
            break
        status = message.get("status")
    if status is None:
        sys.stderr.write(f"toilray: the run's leader (process {child}) ended without an exit status: its fork "
                         "server stopped\n")
        status = 1
    os._exit(status if status >= 0 else 128 - status)


def _connect(name: str, module: str, wait: bool) -> socket.socket | None:
    """A connection to the server named ``name``, or None where none serves (one is started then, for
    the commands to come, front end ``module``'s first). With ``wait``, waits while one warms up,
    whoever started it, up to a limit."""
    deadline = time.monotonic() + _WARM_UP_LIMIT
    started = False
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(name)
            return sock
        except OSError:
            sock.close()
        starting = _start_server(name, module)
        if not wait or (started and starting) or time.monotonic() > deadline:
            return None  # (started and starting): the one this command started is gone, it did not serve
        started = started or starting
        time.sleep(_WARM_UP_POLL)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return int(uid)


def _start_server(name: str, module: str) -> bool:
    """Start a server in the background (it outlives this command), in this command's conditions,
    unless one is warming up or serving already: a server holds its digest's lock while it lives
    and serves. It warms front end ``module`` before it serves. Whether this started one."""
    log = os.path.join(state_dir(), "forkserver.log")
    with contextlib.suppress(OSError):
        os.makedirs(_records(), exist_ok=True)
        lock = os.open(os.path.join(_records(), name.rsplit("-", 1)[1] + _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            code = (f"import sys; sys.path[:] = {sys.path!r}; from toilray.forkserver import serve; "
                    f"serve({name!r}, {lock}, {module!r})")
            # One line per run: a log grown past the limit is started afresh by the next server.
            with open(log, "w" if os.path.exists(log) and os.path.getsize(log) > _LOG_LIMIT else "a") as output:
                # Through a shell that leaves it in the background: not a child of this command, which Ray
                # (this command may be a Ray worker) would kill with the command's other children.
                subprocess.run(["/bin/sh", "-c", '"$@" &', "sh", sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                               stdout=output, stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
                               pass_fds=(lock,), check=False)
            return True
        finally:
            os.close(lock)
    return False


# -- the server's side -------------------------------------------------------------------------

def stop() -> int:
    """Have the servers of this state directory take no new run (each exits once its runs end);
    how many were asked."""
    asked = 0
    with contextlib.suppress(OSError):
        for digest in os.listdir(_records()):
            if digest.endswith(_LOCK):
                continue
            with contextlib.suppress(OSError, ValueError):
                pid = int(_read(os.path.join(_records(), digest)))
                # The record of a server that was killed outright names a process id that may be reused.
                if "toilray.forkserver" in _read(f"/proc/{pid}/cmdline"):
                    os.kill(pid, signal.SIGTERM)
                    asked += 1
    return asked


def ray_ids_differ_after_fork() -> bool:
    """Whether two forks of this process draw different Ray IDs.

    Ray's C++ ID generator is seeded at its first use; where that was in this process, every fork
    copies its state, and concurrent runs forked from here would all give their Ray drivers the
    same worker ID (a driver then exits 1, silently)."""
    from ray._raylet import WorkerID

    drawn = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, WorkerID.from_random().binary())
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as answer:
            drawn.append(answer.read())
        os.waitpid(pid, 0)
    return drawn[0] != drawn[1]


def _warm(module: str) -> str | None:
    """Warm front end ``module``: None, or what makes forks of this process unsafe now."""
    importlib.import_module(module).preload()
    if not ray_ids_differ_after_fork():
        return ("warming up seeded Ray's ID generator (an actor class made at import?); its forks would share "
                "Ray IDs")
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:
        # A fork would carry locks that other threads hold into the child.
        return f"warming up started {threads - 1} threads ({threading.enumerate()})"
    return None


def serve(name: str, lock: int, first: str, idle_timeout: float = IDLE_TIMEOUT) -> None:
    """The server's process: warm front end ``first`` (its starter's), then fork a child per request
    until idle or stopped, warming the other front ends while no request waits.

    The commands like the one that started a server wait for one front end's warm-up, not all: the
    managed local Ray's first workers wait for theirs while Ray starts, and cwltool's would double it.
    ``lock`` is the descriptor of the lock its starter took for it, held until it takes no more runs."""
    stopping = False

    def stop_taking(_number: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop_taking)
    for variable in _PER_COMMAND:
        os.environ.pop(variable, None)
    # Ray reads its settings, RAY_JOB_ID among them, once per process: a warm process keeps what it warmed
    # with. Forks of a server warmed with a job's ID all registered as that job's workers, whatever job
    # Ray started them for (and the raylet ended them once that job had ended). Warmed as Ray's prestarted
    # workers are, with no job, each fork is given the job it was started for.
    os.environ["RAY_JOB_ID"] = _NO_JOB
    print(f"fork server {os.getpid()}: warming up {first}", flush=True)
    problem = _warm(first)
    if problem is not None:
        raise SystemExit(f"toilray fork server: {problem}; not serving")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(name)
    except OSError:
        return  # another command started one already
    listener.listen(64)
    record = os.path.join(_records(), name.rsplit("-", 1)[1])
    os.makedirs(_records(), exist_ok=True)
    with open(record, "w") as handle:
        handle.write(str(os.getpid()))
    print(f"fork server {os.getpid()}: serving", flush=True)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _number, _frame: None)
    children: dict[int, _Run] = {}
    left: set[int] = set()  # children whose command is gone (signalled)
    # A server in a Ray worker's conditions (RAY_RAYLET_PID is in the digest) serves that raylet's workers
    # only: once the raylet is gone, no command will come.
    raylet = os.environ.get("RAY_RAYLET_PID")
    # A descriptor that becomes readable when the raylet exits (a zombie still answers kill 0) wakes the
    # loop at once.
    raylet_exit = _exit_descriptor(int(raylet)) if raylet is not None else None

    def raylet_gone() -> bool:
        if raylet_exit is not None:
            return bool(select.select([raylet_exit], [], [], 0)[0])
        return raylet is not None and not pid_alive(int(raylet))

    try:
        _serve(listener, lock, children, left, [wake_read] if raylet_exit is None else [wake_read, raylet_exit],
               wake_write, idle_timeout, lambda: stopping or raylet_gone(), [m for m in FRONT_ENDS if m != first])
    finally:
        with contextlib.suppress(OSError):
            os.unlink(record)
        if raylet_exit is not None:
            os.close(raylet_exit)
    print(f"fork server {os.getpid()}: stopped", flush=True)


def _exit_descriptor(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), or None where the kernel has none or it is gone
    (then the loop's regular check finds it gone)."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _serve(listener: socket.socket, lock: int, children: dict[int, _Run], left: set[int], wakers: list[int],
           wake_write: int, idle_timeout: float, stopping: Callable[[], bool], cold: list[str]) -> None:
    """``wakers[0]`` is the signal wake-up pipe (drained when readable); any others wake the loop once.
    ``cold``: the front ends to warm, one at a time, whenever nothing is to be read."""
    wake_read = wakers[0]
    last_busy = serving_since = time.monotonic()
    refusing = False  # a warm-up made forks unsafe: no more runs
    while children or (not (stopping() or refusing) and time.monotonic() - last_busy < idle_timeout):
        if (stopping() or refusing) and listener.fileno() >= 0:
            listener.close()  # unbinds the name: the next command starts a server of its own
            os.close(lock)
        watched = {run.command.fileno(): pid for pid, run in children.items() if pid not in left}
        listening = [listener.fileno()] if listener.fileno() >= 0 else []
        warming = bool(cold and listening)
        wait = (max(0.0, min(_COLD_QUIET, serving_since + _COLD_LIMIT - time.monotonic())) if warming
                else max(1.0, idle_timeout / 10))
        readable, _, _ = select.select([*wakers, *watched, *listening], [], [], wait)
        if not readable and warming:
            print(f"fork server {os.getpid()}: preloading {cold[0]}", flush=True)
            problem = _warm(cold.pop(0))
            if problem is not None:
                print(f"fork server {os.getpid()}: {problem}; taking no more runs", flush=True)
                refusing = True
            continue
        for source in readable:
            if source in listening:
                _accept(listener, children, [listener.fileno(), lock, *wakers, wake_write])
            elif source == wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 512)
            elif source in wakers:
                wakers.remove(source)  # it stays readable: woken once is enough
            else:
                _hear(watched[source], children[watched[source]], left)
        _reap(children, left)
        if children:
            last_busy = time.monotonic()


@dataclass
class _Run:
    """A child of the server: the channel to its command, and the front end it runs."""

    command: _Channel
    front_end: str


def _hear(pid: int, run: _Run, left: set[int]) -> None:
    """Act on what the command of run ``pid`` sent: each signal it passes on, or its end."""
    while True:
        message = None
        with contextlib.suppress(OSError):
            message, _ = run.command.receive()
        if message is None:
            # The command is gone (killed outright): by default its run ends as on a scheduler's cancel.
            left.add(pid)
            front_end = sys.modules[run.front_end]
            ending = getattr(front_end, "SIGNAL_WHEN_COMMAND_GONE", signal.SIGTERM)
            with contextlib.suppress(ProcessLookupError):
                if getattr(front_end, "OWN_PROCESS_GROUP", False):
                    os.killpg(pid, ending)
                else:
                    os.kill(pid, ending)
            return
        if message.get("signal") in {int(n) for n in _FORWARDED}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, message["signal"])
        if not run.command.holds_message():
            return


def _accept(listener: socket.socket, children: dict[int, _Run], server_fds: list[int]) -> None:
    sock, _ = listener.accept()
    command = _Channel(sock)
    fds: list[int] = []
    try:
        if _peer_uid(sock) != os.getuid():
            sock.close()
            return
        sock.settimeout(10)
        request, fds = command.receive()
        sock.settimeout(None)
        if request is None or len(fds) != _STREAMS or request.get("module") not in FRONT_ENDS:
            raise OSError("not a request")
    except OSError:
        for fd in fds:
            os.close(fd)
        sock.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _become(request, fds, [*server_fds, sock.fileno(), *(c.command.fileno() for c in children.values())])
    for fd in fds:
        os.close(fd)
    print(f"fork server {os.getpid()}: run {pid}: {' '.join(request['argv'])[:_LOGGED_COMMAND]}", flush=True)
    children[pid] = _Run(command, request["module"])
    with contextlib.suppress(OSError):
        command.send({"pid": pid})


def _reap(children: dict[int, _Run], left: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        run = children.pop(pid, None)
        left.discard(pid)
        if run is not None:
            with contextlib.suppress(OSError):
                run.command.send({"status": os.waitstatus_to_exitcode(status)})
            run.command.close()


def _become(request: dict[str, Any], fds: list[int], server_fds: list[int]) -> None:
    """In the child: become the command's process, and run its front end (never returns)."""
    global _in_child
    _in_child = True
    status = 70  # EX_SOFTWARE: what a child that failed to start its run reports
    try:
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        front_end = importlib.import_module(request["module"])
        if getattr(front_end, "OWN_PROCESS_GROUP", False):
            os.setpgid(0, 0)
        for fd in server_fds:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["environment"])
        sys.argv = request["argv"]
        tempfile.tempdir = None  # chosen again, from the command's environment
        # As the interpreter would have for the command's own streams: line by line to a terminal.
        sys.stdout.reconfigure(line_buffering=os.isatty(1))  # type: ignore[union-attr]
        status = 1
        front_end.run()
        status = 0
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            status = exc.code or 0
        else:
            sys.stderr.write(f"{exc.code}\n")
            status = 1
    except KeyboardInterrupt as exc:
        # A Ctrl-C while this child still sets up, before its front end reports its own.
        report(exc)
        status = INTERRUPTED
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)
