"""Workflows written, run, cancelled and resumed from the cells of real Jupyter kernels, and the
example notebook run, rendered to HTML and looked at in headless Chromium.

nbclient runs the cells in an ipykernel, as Jupyter would. Job functions, a lambda and a Job
subclass are defined in cells (a kernel's ``__main__`` cannot be imported: they go by value),
a job fails, a *new* kernel redefines the function and restarts, and a non-blocking run is
cancelled while the kernel goes on answering cells, then restarted to completion. The runs use
the three places a workflow can run: Ray embedded in the kernel, the managed local Ray, and a
running Ray given by address (the test session's; the new kernel's runs both use it, as a
process keeps the Ray it joined first).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "notebooks" / "read_counts.ipynb"
# Copies of what nbconvert's pages load from a CDN, put there by .ci/setup-tests.
WIDGET_JS = REPO / ".venv" / "share" / "toilray-tests" / "widgets"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

CELL_TIMEOUT = 300


def execute(cells: list[str], cwd: Path) -> nbformat.NotebookNode:
    """Run ``cells`` in one new kernel; the executed notebook (widget state saved)."""
    return execute_notebook(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells]), cwd)


def execute_notebook(notebook: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def text_of(cell: nbformat.NotebookNode) -> str:
    """What a cell printed to stdout."""
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")


def runs(directory: Path) -> Counter[str]:
    """How many times each job ran: every run leaves a file NAME.<unique> in ``directory``."""
    return Counter(p.name.split(".")[0] for p in directory.iterdir())


DEFINITIONS = """
    import os, pathlib, time, uuid
    import toilray
    from toilray.job import Job

    WORK = pathlib.Path({work!r})

    def count(job, name):
        (WORK / "ran" / f"{{name}}.{{uuid.uuid4().hex}}").touch()
        if name == "c":
            raise ValueError("sample c is unreadable")
        return len(name)

    class Gather(Job):
        def __init__(self, values, label):
            super().__init__()
            self.values, self.label = values, label
        def run(self, fileStore):
            return sum(self.values), self.label

    def scatter(job, names):
        values = [job.addChildJobFn(count, n).rv() for n in names]
        label = job.addChildFn(lambda s: s.upper(), "gathered").rv()
        return job.addFollowOn(Gather(values, label)).rv()

    def wait_for_go(job, name):
        (WORK / "waited" / f"{{name}}.{{uuid.uuid4().hex}}").touch()
        while name != "quick" and not (WORK / "go").exists():
            time.sleep(0.1)
        return name

    def fan_out(job, names):
        return [job.addChildJobFn(wait_for_go, n).rv() for n in names]
"""


def test_cells_fail_fix_restart_in_a_new_kernel_and_cancel(tmp_path: Path, ray_address: str) -> None:
    for sub in ("ran", "waited"):
        (tmp_path / sub).mkdir()
    first = execute([
        DEFINITIONS.format(work=str(tmp_path)),
        # First in this kernel, so on a Ray of its own (a process keeps the first Ray it joins;
        # an embedded one ends with its run).
        """
        handle = toilray.start(Job.wrapJobFn(fan_out, ["quick", "slow1", "slow2"]), str(WORK / "store2"),
                               retryCount=0, embeddedRay=True, disableProgress=True, kill_polling_interval=0.5)
        """,
        """
        print("kernel answers:", handle.status().state, handle.done())
        """,
        """
        deadline = time.monotonic() + 240
        # The root and 'quick' have finished, both slow jobs are running.
        while (handle.status().finished < 2 or len(list((WORK / "waited").iterdir())) < 3) \
                and time.monotonic() < deadline and not handle.done():
            time.sleep(0.2)
        print("stopped:", handle.cancel(timeout=240), handle.status().state)
        """,
        # On the managed local Ray.
        """
        try:
            toilray.run(Job.wrapJobFn(scatter, ["a", "bb", "c", "ddd"]), str(WORK / "store1"), retryCount=0,
                        logLevel="INFO")
        except toilray.FailedJobsException as failed:
            print("FAILED:", failed)
        """,
    ], tmp_path)
    assert text_of(first.cells[2]).strip() == "kernel answers: running False"
    assert text_of(first.cells[3]).strip() == "stopped: True cancelled"
    assert runs(tmp_path / "waited") == {"quick": 1, "slow1": 1, "slow2": 1}
    failing = first.cells[4]
    assert "FAILED:" in text_of(failing) and "'count'" in text_of(failing)
    assert "local Ray" in "".join(o.get("text", "") for o in failing.outputs if o.get("name") == "stderr")
    assert runs(tmp_path / "ran") == {"a": 1, "bb": 1, "c": 1, "ddd": 1}

    # A new kernel: only the fixed function is defined; Gather, the lambda and wait_for_go come
    # from the store (the definitions they were made with).
    second = execute([
        f"""
        import pathlib, uuid, toilray
        WORK = pathlib.Path({str(tmp_path)!r})

        def count(job, name):
            (WORK / "ran" / f"{{name}}.{{uuid.uuid4().hex}}").touch()
            return 100 if name == "c" else len(name)

        print(repr(toilray.run(None, str(WORK / "store1"), restart=True, rayAddress={ray_address!r})))
        """,
        """
        (WORK / "go").touch()
        print(toilray.start(None, str(WORK / "store2"), restart=True).result())
        """,
        # Toil's own API works in a cell as it does in a script.
        """
        from toilray.common import Toil
        from toilray.job import Job

        def double(x):
            return 2 * x

        with Toil(Job.Runner.getDefaultOptions(str(WORK / "store3"))) as toil:
            print(toil.start(Job.wrapFn(double, 21)))
        """,
    ], tmp_path)
    assert text_of(second.cells[0]).strip() == "(106, 'GATHERED')"
    assert runs(tmp_path / "ran") == {"a": 1, "bb": 1, "c": 2, "ddd": 1}
    assert text_of(second.cells[1]).strip() == "['quick', 'slow1', 'slow2']"
    assert runs(tmp_path / "waited") == {"quick": 1, "slow1": 2, "slow2": 2}
    assert text_of(second.cells[2]).strip() == "42"


def outputs(cell: nbformat.NotebookNode, mimetype: str) -> list[str]:
    return [o["data"][mimetype] for o in cell.outputs if mimetype in o.get("data", {})]


def progress_bars(notebook: nbformat.NotebookNode) -> list[dict[str, object]]:
    """The saved state of each cell's progress bar, in cell order: value, max, style and text."""
    state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
    bars = []
    for cell in notebook.cells:
        for view in outputs(cell, "application/vnd.jupyter.widget-view+json") if cell.cell_type == "code" else []:
            box = state[view["model_id"]]["state"]
            label, bar, text = (state[child.removeprefix("IPY_MODEL_")]["state"] for child in box["children"])
            bars.append({"value": bar["value"], "max": bar["max"], "style": bar["bar_style"],
                         "text": label["value"] + text["value"]})
    return bars


def longest_run(image: object, colour: tuple[int, int, int]) -> int:
    """The longest horizontal run of pixels of about ``colour`` in the image."""
    import numpy

    close = (numpy.abs(numpy.asarray(image, dtype=numpy.int16) - colour) <= 30).all(axis=2)
    # Per row, the run lengths are the gaps between the pixels that are not close.
    edges = numpy.pad(~close, ((0, 0), (1, 1)), constant_values=True)
    best = 0
    for row in edges:
        breaks = numpy.flatnonzero(row)
        best = max(best, int(numpy.diff(breaks).max()) - 1)
    return best


# ipywidgets' colours for a bar that ended well (tqdm's "success") and one that did not ("danger").
GREEN, RED = (56, 142, 60), (211, 47, 47)


def test_example_notebook_runs_and_its_progress_bars_render(tmp_path: Path) -> None:
    notebook = execute_notebook(nbformat.read(EXAMPLE, as_version=4), tmp_path)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    run, fix, table, attempts, timeline, started, waited = code[2:]
    assert "contains 1 failed jobs: 'count_reads'" in text_of(run)
    # The failed job's log is a block of its own, not only lines of the log.
    blocks = outputs(run, "text/html")
    assert len(blocks) == 1 and "<details" in blocks[0] and "UnicodeDecodeError" in blocks[0]
    assert "Traceback" in blocks[0]
    assert "'sample': 'sample_C', 'reads': 2000" in outputs(fix, "text/plain")[-1]
    assert "<table" in outputs(table, "text/html")[0]
    frame = outputs(attempts, "text/plain")[0]
    assert "count_reads" in frame and "False" in frame
    figure = json.loads(json.dumps(outputs(timeline, "application/vnd.plotly.v1+json")[0]))
    assert figure["data"]
    assert text_of(started).strip() == "started: running"
    assert text_of(waited).strip() == "completed 4400 reads"

    # The failed run's bar stopped short, in red; the restart's is full and green: all 6 jobs done.
    failed, fixed = progress_bars(notebook)
    assert failed["value"] < failed["max"] and failed["style"] == "danger" and "failed=1" in str(failed["text"])
    assert fixed["value"] == fixed["max"] == 6 and fixed["style"] == "success"
    assert "6/6" in str(fixed["text"]) and "failed=0" in str(fixed["text"]) and "job/s" in str(fixed["text"])

    # Rendered as a page (the widget renderer and require.js from local copies: no network).
    assert (WIDGET_JS / "embed-amd.js").exists(), "run .ci/setup-tests: it fetches the widget renderer"
    exporter = HTMLExporter(widget_renderer_url=(WIDGET_JS / "embed-amd.js").as_uri(),
                            require_js_url=(WIDGET_JS / "require.js").as_uri())
    page = tmp_path / "read_counts.html"
    page.write_text(exporter.from_notebook_node(notebook)[0])
    shot = tmp_path / "shot.png"
    browser = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,4000", "--virtual-time-budget=15000",
         f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert shot.exists(), browser.stderr
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    # A drawn bar: a long stretch of the bar's colour (the page draws nothing else in it).
    assert longest_run(image, GREEN) >= 200
    assert 50 <= longest_run(image, RED) < longest_run(image, GREEN)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_progress_line_and_silence_elsewhere() -> None:
    from toilray.progress import Progress

    terminal = Terminal()
    progress = Progress(True, terminal)
    progress.update(1, 2, 1, 0)
    progress.update(3, 0, 0, 1, force=True)
    progress.close()
    last = terminal.getvalue().split("\r")[-1]
    assert "toilray:  75%" in last and "3/4" in last and "failed=1" in last and "job/s" in last
    piped = io.StringIO()
    progress = Progress(True, piped)
    progress.update(3, 0, 0, 1, force=True)
    progress.close()
    assert piped.getvalue() == ""


def test_stats_load_names_a_missing_store(tmp_path: Path) -> None:
    from toilray import stats
    from toilray.exceptions import NoSuchJobStoreException

    with pytest.raises(NoSuchJobStoreException, match="nowhere"):
        stats.load(str(tmp_path / "nowhere"))


def wait_for(path: str) -> int:
    while not os.path.exists(path):
        time.sleep(0.1)
    return 4


def test_a_run_cancelled_at_once_is_stopped_and_restarts(tmp_path: Path, ray_address: str) -> None:
    """A cancel that comes while the run is still starting (connecting to Ray) is not lost."""
    import toilray
    from toilray.exceptions import WorkflowKilledException
    from toilray.job import Job

    store = str(tmp_path / "store")
    go = tmp_path / "go"
    run = toilray.start(Job.wrapFn(wait_for, str(go)), store, rayAddress=ray_address, disableProgress=True,
                        kill_polling_interval=0.5)
    assert run.cancel(timeout=240)
    assert run.status().state == "cancelled"
    with pytest.raises(WorkflowKilledException):
        run.result()
    go.touch()
    assert toilray.run(None, store, restart=True, rayAddress=ray_address, disableProgress=True) == 4
