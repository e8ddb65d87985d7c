"""Workflows written, run, cancelled and resumed from the cells of real Jupyter kernels.

nbclient runs the cells in an ipykernel, as Jupyter would. Job functions, a lambda and a Job
subclass are defined in cells (a kernel's ``__main__`` cannot be imported: they go by value),
a job fails, a *new* kernel redefines the function and restarts, and a non-blocking run is
cancelled while the kernel goes on answering cells, then restarted to completion. The runs use
the three places a workflow can run: the managed local Ray, Ray embedded in the kernel, and a
running Ray given by address (the test session's).
"""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CELL_TIMEOUT = 300


def execute(cells: list[str], cwd: Path) -> nbformat.NotebookNode:
    """Run ``cells`` in one new kernel; the executed notebook (widget state saved)."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells])
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
        """
        try:
            toilray.run(Job.wrapJobFn(scatter, ["a", "bb", "c", "ddd"]), str(WORK / "store1"), retryCount=0)
        except toilray.FailedJobsException as failed:
            print("FAILED:", failed)
        """,
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
    ], tmp_path)
    assert "FAILED:" in text_of(first.cells[1]) and "'count'" in text_of(first.cells[1])
    assert text_of(first.cells[3]).strip() == "kernel answers: running False"
    assert text_of(first.cells[4]).strip() == "stopped: True cancelled"
    assert runs(tmp_path / "ran") == {"a": 1, "bb": 1, "c": 1, "ddd": 1}
    assert runs(tmp_path / "waited") == {"quick": 1, "slow1": 1, "slow2": 1}

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
    ], tmp_path)
    assert text_of(second.cells[0]).strip() == "(106, 'GATHERED')"
    assert runs(tmp_path / "ran") == {"a": 1, "bb": 1, "c": 2, "ddd": 1}
    assert text_of(second.cells[1]).strip() == "['quick', 'slow1', 'slow2']"
    assert runs(tmp_path / "waited") == {"quick": 1, "slow1": 2, "slow2": 2}
