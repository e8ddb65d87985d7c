"""Multiple jobs: children, follow-ons, and a job with two parents.

    python examples/dag.py file:my-job-store [--markDir DIR]

Two graphs run side by side under one root:

* tree: ``first`` has children ``second`` and ``third`` and the follow-on ``last``. ``second``
  has a child of its own, ``grandchild``: a follow-on waits for its parent's children *and
  their successors*, so ``last`` runs after ``grandchild`` too.
* dag:  ``first`` has the children ``second`` and ``via1``; ``via1`` leads through ``via2``
  and ``via3`` to ``third``; and ``last`` is a child of both ``second`` and ``third``.
  ``third`` is three generations deeper than ``second``, so ``last`` would visibly run too
  early if it waited for ``second`` only.

Each job leaves a marker file in a directory shared by its graph and returns the labels of
the markers it found when it started, i.e. the jobs that finished starting before it. The
script prints those observations, and how many times each job ran, as JSON.
"""

import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from typing import Any

from toilray.common import Toil
from toilray.job import Job


def helloWorld(job: Job, label: str, markDir: str, memory: str = "500M", cores: float = 0.5,
               disk: str = "100M") -> dict[str, Any]:
    seen = sorted({name.split("-", 1)[0] for name in os.listdir(markDir)})
    # A new file per execution, so that running twice leaves two markers.
    open(os.path.join(markDir, f"{label}-{uuid.uuid4().hex}"), "w").close()
    job.log(f"Hello world, I have a message: {label}")
    return {"job": label, "after": seen}


def buildGraphs(job: Job, markDir: str) -> dict[str, list[Any]]:
    treeDir = os.path.join(markDir, "tree")
    dagDir = os.path.join(markDir, "dag")
    os.makedirs(treeDir)
    os.makedirs(dagDir)

    # The tree, spelt with explicit wrapping and addChild/addFollowOn.
    t1 = Job.wrapJobFn(helloWorld, "first", treeDir)
    t2 = Job.wrapJobFn(helloWorld, "second", treeDir)
    t3 = Job.wrapJobFn(helloWorld, "third", treeDir)
    t4 = Job.wrapJobFn(helloWorld, "last", treeDir)
    t1.addChild(t2)
    t1.addChild(t3)
    t1.addFollowOn(t4)
    t5 = t2.addChildJobFn(helloWorld, "grandchild", treeDir)
    job.addChild(t1)

    # The DAG, spelt with the shorthand functions plus one extra child edge.
    d1 = job.addChildJobFn(helloWorld, "first", dagDir)
    d2 = d1.addChildJobFn(helloWorld, "second", dagDir)
    via = d1
    for step in ("via1", "via2", "via3"):
        via = via.addChildJobFn(helloWorld, step, dagDir)
    d3 = via.addChildJobFn(helloWorld, "third", dagDir)
    d4 = d2.addChildJobFn(helloWorld, "last", dagDir)
    d3.addChild(d4)

    return {
        "tree": [t1.rv(), t2.rv(), t3.rv(), t4.rv(), t5.rv()],
        "dag": [d1.rv(), d2.rv(), d3.rv(), d4.rv()],
    }


def countRuns(directory: str) -> dict[str, int]:
    return dict(Counter(name.split("-", 1)[0] for name in os.listdir(directory)))


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--markDir", default=None,
                        help="An empty directory for the marker files (default: a temporary one).")
    options = parser.parse_args()
    markDir = options.markDir or tempfile.mkdtemp(prefix="dag-markers-")
    try:
        with Toil(options) as toil:
            if toil.options.restart:
                graphs = toil.restart()
            else:
                graphs = toil.start(Job.wrapJobFn(buildGraphs, os.path.abspath(markDir)))
        for name in ("tree", "dag"):
            print(f"{name} order: {json.dumps(graphs[name])}")
            print(f"{name} runs: {json.dumps(countRuns(os.path.join(markDir, name)), sort_keys=True)}")
    finally:
        if options.markDir is None:
            shutil.rmtree(markDir, ignore_errors=True)


if __name__ == "__main__":
    main()
