"""Which finished jobs' return values the leader keeps in memory: pure Python, no Ray.

Every finished job's return value is durable in its commit record, so holding a reference to
it in the leader (a Ray ObjectRef: small values live in the leader's own memory) only saves
a job-store read for the jobs whose promises still need it. Holding every one made leader
memory grow with the number of jobs run; this keeps a value exactly while someone can still
read it:

* an unfinished job whose promises name it (its users are counted when it is added, and a
  job's promises can only be made by the run that created it or by the job's own run, which
  are both added before or with the job's success);
* a kept value whose own promises name it (a job returning ``child.rv()``);
* the workflow's root result, which the leader returns at the end.

Counting errs only towards keeping: a user that never finishes (failed for good, dropped by a
checkpoint rerun) leaves its values held until the run ends. Dropping too early would still
be correct (readers fall back to the job store), just slower.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Generic, TypeVar

from toilray.protocol import JobSpec

Value = TypeVar("Value")


class ResultKeeper(Generic[Value]):
    def __init__(self, root_result: str | None) -> None:
        self._root = root_result
        self._users: Counter[str] = Counter()
        self._values: dict[str, Value] = {}
        self._deps: dict[str, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def get(self, job_id: str) -> Value | None:
        return self._values.get(job_id)

    def wants(self, job_id: str) -> bool:
        """Whether a value of this job would be kept now: promises name it, or it is the root's."""
        return self._users[job_id] > 0 or job_id == self._root

    def promised_by(self, job_id: str) -> frozenset[str]:
        """The results a kept value's own promises name."""
        return self._deps.get(job_id, frozenset())

    def jobs_added(self, specs: Iterable[JobSpec]) -> None:
        for spec in specs:
            self._users.update(spec.promise_deps)

    def job_succeeded(self, spec: JobSpec, value: Value | None, result_deps: frozenset[str]) -> None:
        """The job committed; call after ``jobs_added`` for the jobs its run created."""
        if value is not None and (self._users[spec.id] or spec.id == self._root):
            self._values[spec.id] = value
            if result_deps:
                self._deps[spec.id] = result_deps
                self._users.update(result_deps)
        for dep in spec.promise_deps:
            self._release(dep)

    def drop_values(self) -> None:
        """Hold no value any more (they may have been lost with a node): readers use the job store."""
        self._values.clear()
        self._deps.clear()

    def forget(self, job_id: str) -> None:
        """The job left the graph (a checkpoint rerun): its value is stale."""
        if self._values.pop(job_id, None) is not None:
            for dep in self._deps.pop(job_id, ()):
                self._release(dep)

    def _release(self, job_id: str) -> None:
        work = [job_id]
        while work:
            current = work.pop()
            self._users[current] -= 1
            if self._users[current] > 0:
                continue
            del self._users[current]
            if current != self._root and self._values.pop(current, None) is not None:
                work.extend(self._deps.pop(current, ()))
