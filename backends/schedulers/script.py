"""What the three schedulers' batch scripts share: the shebang, directives, the command."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from toilray.hpc import BatchRequest


def batch_script(prefix: str, directives: Iterable[str], request: BatchRequest) -> str:
    """A bash script: ``prefix``-ed directive lines, exported variables, the command, and with a
    status file, the command's exit status written there (what ``toilray hpc --wait`` reads)."""
    lines = ["#!/bin/bash", *(f"{prefix} {d}" for d in directives)]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(request.environment.items())]
    if request.status_file is None:
        lines.append("exec " + shlex.join(request.command))
    else:
        # A trap keeps bash alive when the scheduler signals the job (the command gets the signal
        # too, untrapped: toilray then stops its Ray); an untrapped bash would die at once and end
        # the job, and the scheduler would kill toilray before it had cleaned up.
        lines += ["trap : TERM INT", shlex.join(request.command), "status=$?",
                  f"echo $status > {shlex.quote(request.status_file)}", "exit $status"]
    return "\n".join(lines) + "\n"


def megabytes(size: int) -> int:
    """Bytes as whole mebibytes, rounded up (schedulers count memory in MB)."""
    return max(1, -(-size // (1024 * 1024)))
