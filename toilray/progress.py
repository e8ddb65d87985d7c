"""What a user watching a run sees: a progress bar of jobs done, running, queued and failed, with
the elapsed time and the rate (tqdm's: a line on a terminal, a widget in a Jupyter notebook), and
in a notebook each failed job's log as a block of its own."""

from __future__ import annotations

import html
import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

_REFRESH = 0.25


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel that can show widgets."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


# The widgets of this kernel's runs: ipywidgets closes a widget that is no longer referenced, and
# a closed widget vanishes from the cell (and from the state a saved notebook keeps).
_widgets: list[Any] = []


def _make_bar(stream: TextIO, notebook: bool, total: int) -> Any:
    options = {"total": total, "desc": "toilray", "unit": "job", "mininterval": _REFRESH, "leave": True}
    if notebook:
        from tqdm.notebook import tqdm as notebook_tqdm

        bar = notebook_tqdm(**options)
        _widgets.append(bar.container)
        return bar
    # tqdm hides its line on a terminal that reports no size (a bare pty): give it one.
    if _columns(stream):
        return tqdm(file=stream, dynamic_ncols=True, **options)
    return tqdm(file=stream, ncols=100, nrows=24, **options)


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress:
    """On a terminal, one line of ``stream`` rewritten in place; in a notebook, a widget in the
    cell's output. Otherwise (a log file, a pipe) silent."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._notebook = enabled and in_notebook()
        self._enabled = self._notebook or (enabled and self._stream.isatty())
        # Made at the first update, when the total is known: tqdm draws a bar of no total differently.
        self._bar: Any = None
        self._shown = 0.0

    def update(self, done: int, running: int, queued: int, failed: int, force: bool = False) -> None:
        if not self._enabled:
            return
        total = done + running + queued + failed
        if self._bar is None:
            self._bar = _make_bar(self._stream, self._notebook, max(total, 1))
        bar = self._bar
        if total != bar.total:
            bar.total = total
            if self._notebook:
                # tqdm's widget takes its length from the total given when it was made.
                bar.container.children[1].max = total
        bar.set_postfix(running=running, queued=queued, failed=failed, refresh=False)
        # update() keeps tqdm's rate; the refresh shows a changed total or counts at once.
        bar.update(done - bar.n)
        now = time.monotonic()
        if force or now - self._shown >= _REFRESH:
            self._shown = now
            bar.refresh()

    def job_failed(self, report: str, log: str) -> bool:
        """Show a failed attempt's report and log as a block of the cell's output; whether it
        was shown (only in a notebook: a terminal gets them from the log)."""
        if not self._notebook:
            return False
        from IPython.display import HTML, display

        style = "max-height:20em;overflow:auto;font-family:monospace"
        body = f"<pre style='{style}'>{html.escape(log.rstrip())}</pre>" if log else ""
        display(HTML(f"<details open><summary><b>{html.escape(report)}</b></summary>{body}</details>"))
        return True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._enabled = False
