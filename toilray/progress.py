"""The live progress line a leader shows on a terminal: jobs done, running, queued, failed."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_REFRESH = 0.25


class Progress:
    """Rewrites one line of ``stream`` in place; silent unless the stream is a terminal."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._enabled = enabled and self._stream.isatty()
        self._started = time.monotonic()
        self._shown = 0.0
        self._width = 0

    def update(self, done: int, running: int, queued: int, failed: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self._enabled or (not force and now - self._shown < _REFRESH):
            return
        self._shown = now
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        line = (f"toilray: {done} done, {running} running, {queued} queued, {failed} failed"
                f" | {elapsed:.0f} s | {rate:.1f} jobs/s")
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def close(self) -> None:
        if self._enabled and self._width:
            self._stream.write("\n")
            self._stream.flush()
