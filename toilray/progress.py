"""The live progress line a leader shows on a terminal: jobs done, running, queued, failed."""

from __future__ import annotations

import html
import sys
import time
from typing import Any, TextIO

_REFRESH = 0.25


def _notebook_display() -> Any:
    """A display handle when running in a Jupyter kernel, else None."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        from IPython.display import HTML, display
    except ImportError:
        return None
    return display(HTML(""), display_id=True)


class Progress:
    """Rewrites one line of ``stream`` in place when it is a terminal; in a Jupyter notebook,
    updates a progress bar in the cell's output instead. Otherwise silent."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._notebook = _notebook_display() if enabled else None
        self._enabled = enabled and (self._notebook is not None or self._stream.isatty())
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
        if self._notebook is not None:
            from IPython.display import HTML

            total = max(done + running + queued + failed, 1)
            self._notebook.update(HTML(f'<progress value="{done}" max="{total}" style="width:40%"></progress> '
                                       f"<code>{html.escape(line)}</code>"))
            return
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def close(self) -> None:
        if self._enabled and self._width and self._notebook is None:
            self._stream.write("\n")
            self._stream.flush()
