"""Small process helpers."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this ID exists on this machine (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
