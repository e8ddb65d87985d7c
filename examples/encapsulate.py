"""Encapsulation: a job and its whole subgraph seen from outside as one job.

    python examples/encapsulate.py file:my-job-store [--markDir DIR] [--encapsulateRoot]

``A`` has a child and a follow-on. ``A.encapsulate()`` wraps that subgraph, and ``B`` is added
as a child of the encapsulated job, so ``B`` must run after all three jobs of ``A``'s graph.
``B`` is also given the encapsulated job's ``rv()``, which is the inner ``A``'s return value.
The manual's other spelling, a parent ``Ap`` of ``A`` with ``B`` as ``Ap``'s follow-on, runs
alongside for comparison.

Each job leaves a marker file and reports the markers it found when it started. The workflow
returns those reports; the script prints them as JSON.

With ``--encapsulateRoot`` the root job itself is encapsulated, and a last job is added as its
child, as in the manual's ``A = A.encapsulate(); A.addChild(B); toil.start(A)``. The workflow
still returns the inner root's value: ``toil.start`` returns the root's ``rv()``.
"""

import json
import os
import shutil
import tempfile
import uuid
from typing import Any

from toilray.common import Toil
from toilray.job import Job


def step(label: str, markDir: str, received: Any = None, memory: str = "200M",
         cores: float = 0.5) -> dict[str, Any]:
    seen = sorted({name.split("-", 1)[0] for name in os.listdir(markDir)})
    open(os.path.join(markDir, f"{label}-{uuid.uuid4().hex}"), "w").close()
    return {"job": label, "after": seen, "received": received}


def buildA(markDir: str) -> Job:
    A = Job.wrapFn(step, "A", markDir)
    A.addChildFn(step, "Achild", markDir)
    A.addFollowOnFn(step, "AfollowOn", markDir)
    return A


def buildAll(job: Job, markDir: str) -> dict[str, Any]:
    encapsulatedDir = os.path.join(markDir, "encapsulated")
    parentDir = os.path.join(markDir, "parent")
    os.makedirs(encapsulatedDir)
    os.makedirs(parentDir)

    # With encapsulation: B is a child of E(A).
    encapsulated = buildA(encapsulatedDir).encapsulate()
    job.addChild(encapsulated)
    B = encapsulated.addChild(Job.wrapFn(step, "B", encapsulatedDir, encapsulated.rv()))

    # Without: a parent Ap of A, and B as Ap's follow-on.
    Ap = Job()
    Ap.addChild(buildA(parentDir))
    job.addChild(Ap)
    Bp = Ap.addFollowOnFn(step, "B", parentDir)

    return {"encapsulated": {"rv": encapsulated.rv(), "B": B.rv()}, "parent": {"B": Bp.rv()}}


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--markDir", default=None,
                        help="An empty directory for the marker files (default: a temporary one).")
    parser.add_argument("--encapsulateRoot", action="store_true",
                        help="Encapsulate the root job and give it a child before starting it.")
    options = parser.parse_args()
    markDir = os.path.abspath(options.markDir or tempfile.mkdtemp(prefix="encapsulate-markers-"))

    try:
        root = Job.wrapJobFn(buildAll, markDir, memory="200M", cores=0.5)
        if options.encapsulateRoot:
            root = root.encapsulate()
            root.addChild(Job.wrapFn(step, "last", markDir))
        with Toil(options) as toil:
            result = toil.restart() if toil.options.restart else toil.start(root)
        print(json.dumps(result, sort_keys=True))
    finally:
        if options.markDir is None:
            shutil.rmtree(markDir, ignore_errors=True)


if __name__ == "__main__":
    main()
