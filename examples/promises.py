"""Promises: passing return values forward, indexing them, and nesting them in arguments.

    python examples/promises.py file:my-job-store [--raiseWrap]

The workflow's result is a dictionary printed as JSON:

* ``chain``: ``j1 -> child j2(j1.rv()) -> follow-on j3(j2.rv())`` with ``fn(i) = i + 1``
  started at 1, so the three jobs see 1, 2 and 3 (and log ``i is: ...`` at level 100).
* ``index``: ``rv(2)`` of a job returning ``(0, 1, 2, 3)``.
* ``path``: ``rv(1)`` and ``rv(1, 'a')`` of a job returning ``[6, {'a': 42}]``.
* ``slice``: ``rv(slice(1, 3))`` of a job returning ``[6, 7, 8, 9]``.
* ``nested``: promises inside a list and a dict given as arguments to one follow-on.

With ``--raiseWrap`` the manual's failing variant runs instead: a follow-on raises
``RuntimeError`` with the promised ``rv(2)`` as its message, so the workflow fails.
"""

import json
from typing import Any

from toilray.common import Toil
from toilray.job import Job


def fn(job: Job, i: int) -> int:
    # Level 100 is above CRITICAL, so the message shows whatever the log level.
    job.log(f"i is: {i}", level=100)
    return i + 1


def seen(job: Job, i: int) -> dict[str, int]:
    """Like ``fn``, but also reports the value it was given."""
    return {"got": i, "returned": fn(job, i)}


def fourTuple() -> tuple[int, int, int, int]:
    return (0, 1, 2, 3)


def listWithDict() -> list[Any]:
    return [6, {"a": 42}]


def fourList() -> list[int]:
    return [6, 7, 8, 9]


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


def raiseWrap(arg: Any) -> None:
    raise RuntimeError(arg)


def parent(job: Job) -> dict[str, Any]:
    j1 = job.addChildJobFn(seen, 1)
    j2 = j1.addChildJobFn(seen, j1.rv("returned"))
    j3 = j1.addFollowOnJobFn(seen, j2.rv("returned"))

    indexable = job.addChildFn(fourTuple)
    withDict = job.addChildFn(listWithDict)
    sliceable = job.addChildFn(fourList)

    # Promise consumers are follow-ons of the parent, promisers its children, so every promise
    # is fulfilled before its consumer is scheduled.
    index = job.addFollowOnFn(echo, indexable.rv(2))
    path = job.addFollowOnFn(echo, withDict.rv(1), withDict.rv(1, "a"))
    sliced = job.addFollowOnFn(echo, sliceable.rv(slice(1, 3)))
    nested = job.addFollowOnFn(
        echo,
        [indexable.rv(0), withDict.rv(0), sliceable.rv(3)],
        mapping={"tuple": indexable.rv(), "a": withDict.rv(1, "a"), "deep": [{"x": sliceable.rv(slice(2))}]},
    )
    return {
        "chain": [j1.rv(), j2.rv(), j3.rv()],
        "index": index.rv("args", 0),
        "path": path.rv("args"),
        "slice": sliced.rv("args", 0),
        "nested": nested.rv(),
    }


def failingParent(job: Job) -> None:
    indexable = job.addChildFn(fourTuple)
    job.addFollowOnFn(raiseWrap, indexable.rv(2))


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--raiseWrap", action="store_true",
                        help="Run the variant whose follow-on raises RuntimeError(rv(2)).")
    options = parser.parse_args()

    root = Job.wrapJobFn(failingParent if options.raiseWrap else parent)
    with Toil(options) as toil:
        result = toil.restart() if toil.options.restart else toil.start(root)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
