"""Ends an embedded Ray's processes when the leader that started it dies, however it dies.

Ray's raylet and GCS share the fate of the driver that started them, but after a
``kill -9`` of the driver its dashboard and runtime-env agents outlive it by a minute or
more (they first try to report the raylet's death to the GCS that died with it). This
process is started with the embedded Ray and holds the read end of a pipe whose write end
only the leader has: the read returns at end of file when the leader is gone, for any
reason, or has let go of the pipe after ``ray.shutdown`` (the leader itself may still be
finishing then: it is never a victim), and the processes of that Ray session are killed.
No polling, nothing to clean up after a normal exit (stragglers go too).

Ray renames its agents' processes (``ray::DashboardAgent``), so a process belongs to the
session when its command line names the session directory or it holds a file open there.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import psutil


def start(session_dir: str) -> subprocess.Popen[bytes]:
    """Start the reaper for the Ray session in ``session_dir``; keep the returned object alive."""
    return subprocess.Popen(
        [sys.executable, "-m", "toilray.lib.ray_reaper", session_dir, str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C must not end it before the leader
    )


def session_processes(session_dir: str, spare: int | None = None) -> list[psutil.Process]:
    """This user's processes that belong to the Ray session in ``session_dir`` (but ``spare``)."""
    found = []
    prefix = session_dir.rstrip("/") + "/"
    for process in psutil.process_iter(["pid", "uids", "cmdline"]):
        if process.pid in (os.getpid(), spare) or process.info["uids"] is None \
                or process.info["uids"].real != os.getuid():
            continue
        try:
            command = " ".join(process.info["cmdline"] or ())
            if session_dir in command or any(f.path.startswith(prefix) for f in process.open_files()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def main() -> None:
    session_dir, leader = sys.argv[1], int(sys.argv[2])
    sys.stdin.buffer.read()  # returns when the leader's end of the pipe closes
    for process in session_processes(session_dir, spare=leader):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


if __name__ == "__main__":
    main()
