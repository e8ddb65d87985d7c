"""Unit tests of the leader's job-graph state machine (no Ray, no I/O).

The ordering rules under test are Toil's: a child runs once every parent it is a child of
has run; a follow-on runs once its parent has run *and* the whole subtree of every child of
that parent (children, follow-ons and theirs, recursively) has finished.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import pytest

from toilray.leader_state import NODE_LOSSES_PER_JOB, FailureAction, GraphError, LeaderState, Loss, uses_a_try
from toilray.protocol import JobSpec
from toilray.requirements import Requirements

RETRY, FAILED = FailureAction.RETRY, FailureAction.FAILED

REQ = Requirements(cores=1.0, memory=2**30, disk=2**30, accelerators=(), preemptible=False)


def spec(job_id: str, children: Sequence[str] = (), followons: Sequence[str] = ()) -> JobSpec:
    return JobSpec(
        id=job_id,
        name=f"kind-{job_id}",
        unit_name="",
        display_name=job_id,
        requirements=REQ,
        checkpoint=False,
        children=tuple(children),
        followons=tuple(followons),
        body=b"pickled body of " + job_id.encode(),
        promise_deps=frozenset(),
    )


def ready(state: LeaderState) -> set[str]:
    return set(state.take_ready())


def new_state(specs: Iterable[JobSpec], retry_count: int = 1) -> LeaderState:
    state = LeaderState(retry_count)
    state.add_jobs(specs)
    return state


# -- basic ordering ---------------------------------------------------------------------------


def test_roots_are_ready_once() -> None:
    state = new_state([spec("A", children=["B"]), spec("B")])
    assert state.take_ready() == ["A"]
    assert state.take_ready() == []
    assert state.unfinished_count() == 2


def test_children_run_after_parent_and_in_parallel() -> None:
    state = new_state([spec("A", children=["B", "C"]), spec("B"), spec("C")])
    assert ready(state) == {"A"}
    state.job_ran("A")
    assert ready(state) == {"B", "C"}
    state.job_ran("B")
    state.job_ran("C")
    assert ready(state) == set()
    assert state.unfinished_count() == 0
    assert state.finished_count == 3


def test_followon_waits_for_direct_children() -> None:
    state = new_state([spec("A", children=["B"], followons=["F"]), spec("B"), spec("F")])
    assert ready(state) == {"A"}
    state.job_ran("A")
    assert ready(state) == {"B"}
    state.job_ran("B")
    assert ready(state) == {"F"}


def test_followon_waits_for_whole_child_subtree() -> None:
    # A -child-> B -child-> C -followon-> D ; B -followon-> E -child-> G ; A -followon-> F
    state = new_state([
        spec("A", children=["B"], followons=["F"]),
        spec("B", children=["C"], followons=["E"]),
        spec("C", followons=["D"]),
        spec("D"),
        spec("E", children=["G"]),
        spec("G"),
        spec("F"),
    ])
    order = [("A", {"B"}), ("B", {"C"}), ("C", {"D"}), ("D", {"E"}), ("E", {"G"}), ("G", {"F"})]
    assert ready(state) == {"A"}
    for job_id, expected in order:
        state.job_ran(job_id)
        assert ready(state) == expected, f"after {job_id} ran"
    state.job_ran("F")
    assert state.unfinished_count() == 0


def test_followon_of_a_job_without_children_is_ready_when_it_ran() -> None:
    state = new_state([spec("A", followons=["F1", "F2"]), spec("F1"), spec("F2")])
    ready(state)
    state.job_ran("A")
    assert ready(state) == {"F1", "F2"}


def test_followon_does_not_wait_for_siblings_followons() -> None:
    # Follow-ons of the same job run in parallel: F1's own follow-on does not delay F2.
    state = new_state([spec("A", followons=["F1", "F2"]), spec("F1", followons=["G"]),
                       spec("F2"), spec("G")])
    ready(state)
    state.job_ran("A")
    assert ready(state) == {"F1", "F2"}


def test_child_of_two_parents_waits_for_both() -> None:
    # Toil's DAG example: j1 -> j2, j3 ; j2 -> j4 ; j3 -> j4
    state = new_state([
        spec("j1", children=["j2", "j3"]),
        spec("j2", children=["j4"]),
        spec("j3", children=["j4"]),
        spec("j4"),
    ])
    ready(state)
    state.job_ran("j1")
    assert ready(state) == {"j2", "j3"}
    state.job_ran("j2")
    assert ready(state) == set()
    state.job_ran("j3")
    assert ready(state) == {"j4"}
    state.job_ran("j4")
    assert state.unfinished_count() == 0


def test_job_that_is_child_of_one_and_followon_of_another() -> None:
    # R -> A, B ; A -followon-> X ; B -child-> X : X needs B to have run and A's subtree to be done.
    state = new_state([
        spec("R", children=["A", "B"]),
        spec("A", children=["C"], followons=["X"]),
        spec("B", children=["X"]),
        spec("C"),
        spec("X"),
    ])
    ready(state)
    state.job_ran("R")
    assert ready(state) == {"A", "B"}
    state.job_ran("B")
    state.job_ran("A")
    assert ready(state) == {"C"}  # X still waits for A's child C
    state.job_ran("C")
    assert ready(state) == {"X"}


def test_parent_followon_waits_for_shared_child() -> None:
    # R has follow-on F; R's children A and B share child C: F waits for C.
    state = new_state([
        spec("R", children=["A", "B"], followons=["F"]),
        spec("A", children=["C"]),
        spec("B", children=["C"]),
        spec("C"),
        spec("F"),
    ])
    ready(state)
    state.job_ran("R")
    assert ready(state) == {"A", "B"}
    state.job_ran("A")
    state.job_ran("B")
    assert ready(state) == {"C"}
    state.job_ran("C")
    assert ready(state) == {"F"}


# -- jobs added at run time ---------------------------------------------------------------------


def test_dynamic_children_of_a_child_delay_the_followon() -> None:
    state = new_state([spec("A", children=["B"], followons=["F"]), spec("B"), spec("F")])
    ready(state)
    state.job_ran("A")
    assert ready(state) == {"B"}
    # B's run creates child D, which itself has a (new) follow-on E.
    state.add_jobs([spec("D", followons=["E"]), spec("E")], parent="B", children=["D"])
    assert ready(state) == set(), "new jobs must wait for their parent's run to commit"
    state.job_ran("B")
    assert ready(state) == {"D"}
    state.job_ran("D")
    assert ready(state) == {"E"}
    state.job_ran("E")
    assert ready(state) == {"F"}
    state.job_ran("F")
    assert state.unfinished_count() == 0


def test_dynamic_followon_of_a_child_delays_the_parents_followon() -> None:
    state = new_state([spec("A", children=["B"], followons=["F"]), spec("B"), spec("F")])
    ready(state)
    state.job_ran("A")
    ready(state)
    state.add_jobs([spec("G")], parent="B", followons=["G"])
    state.job_ran("B")
    assert ready(state) == {"G"}
    state.job_ran("G")
    assert ready(state) == {"F"}


def test_dynamic_children_of_the_job_itself_delay_its_static_followon() -> None:
    state = new_state([spec("A", followons=["F"]), spec("F")])
    ready(state)
    state.add_jobs([spec("X", children=["Y"]), spec("Y")], parent="A", children=["X"])
    state.job_ran("A")
    assert ready(state) == {"X"}
    state.job_ran("X")
    assert ready(state) == {"Y"}
    state.job_ran("Y")
    assert ready(state) == {"F"}


def test_dynamic_binary_tree_then_root_followon() -> None:
    # Toil's binaryStringFn: every job of depth > 0 adds two children at run time.
    state = new_state([spec("r", followons=["end"]), spec("end")])
    depth = 6
    ran: list[str] = []
    pending = ready(state)
    while pending:
        for job_id in sorted(pending):
            assert job_id != "end" or len(ran) == 2 ** (depth + 1) - 1
            level = len(job_id) - 1
            if job_id != "end" and level < depth:
                kids = [job_id + "0", job_id + "1"]
                state.add_jobs([spec(k) for k in kids], parent=job_id, children=kids)
            state.job_ran(job_id)
            ran.append(job_id)
        pending = ready(state)
    assert ran[-1] == "end"
    assert len(ran) == 2 ** (depth + 1)
    assert state.unfinished_count() == 0


# -- failures and retries -------------------------------------------------------------------------


def test_retry_count_one_means_two_attempts() -> None:
    state = new_state([spec("A", children=["B"]), spec("B")], retry_count=1)
    assert ready(state) == {"A"}
    assert state.remaining_tries("A") == 2
    assert state.job_failed("A").action is RETRY
    assert ready(state) == {"A"}
    assert state.remaining_tries("A") == 1
    assert state.failed == []
    assert state.job_failed("A").action is FAILED
    assert ready(state) == set()
    assert state.failed == ["A"]
    assert state.remaining_tries("A") == 0
    # Its child never runs and nothing finished.
    assert state.unfinished_count() == 2
    assert state.take_finished_subtrees() == []


def test_retry_count_zero_fails_at_once() -> None:
    state = new_state([spec("A")], retry_count=0)
    ready(state)
    assert state.job_failed("A").action is FAILED
    assert state.failed == ["A"]
    assert ready(state) == set()


@pytest.mark.parametrize("retry_count", [2, 5])
def test_retry_count_n_allows_n_plus_one_attempts(retry_count: int) -> None:
    state = new_state([spec("A")], retry_count=retry_count)
    ready(state)
    answers = [state.job_failed("A").action for _ in range(retry_count + 1)]
    assert answers == [RETRY] * retry_count + [FAILED]
    assert state.failed == ["A"]


def test_only_a_lost_node_spares_the_jobs_tries() -> None:
    assert not uses_a_try(Loss.NODE)
    assert all(uses_a_try(loss) for loss in (Loss.WORKER, Loss.MEMORY, Loss.TIME))


def test_a_job_that_lost_its_node_reruns_without_using_a_try() -> None:
    state = new_state([spec("A", children=["B"]), spec("B")], retry_count=0)
    ready(state)
    assert state.job_lost("A", Loss.NODE).action is FailureAction.RERUN
    assert ready(state) == {"A"}
    assert state.attempt("A") == 1 and state.remaining_tries("A") == 1
    state.job_ran("A")
    assert ready(state) == {"B"}
    assert state.failed == []


def test_a_dead_worker_on_a_live_node_uses_a_try() -> None:
    state = new_state([spec("A")], retry_count=0)
    ready(state)
    assert state.job_lost("A", Loss.WORKER).action is FAILED
    assert state.failed == ["A"]


def test_free_reruns_after_lost_nodes_are_limited_unless_unlimited() -> None:
    state = new_state([spec("A")], retry_count=1)
    ready(state)
    answers = [state.job_lost("A", Loss.NODE).action for _ in range(NODE_LOSSES_PER_JOB + 2)]
    assert answers == [FailureAction.RERUN] * NODE_LOSSES_PER_JOB + [RETRY, FAILED]
    unlimited = LeaderState(0, node_losses=None)
    unlimited.add_jobs([spec("A")])
    assert {unlimited.job_lost("A", Loss.NODE).action for _ in range(50)} == {FailureAction.RERUN}
    assert unlimited.node_losses("A") == 50


def test_success_after_a_failed_attempt_releases_children() -> None:
    state = new_state([spec("A", children=["B"]), spec("B")], retry_count=1)
    ready(state)
    assert state.job_failed("A").action is RETRY
    assert ready(state) == {"A"}
    state.job_ran("A")
    assert ready(state) == {"B"}
    assert state.failed == []


def test_failure_does_not_stop_independent_branches() -> None:
    state = new_state([
        spec("R", children=["A", "B"], followons=["F"]),
        spec("A", children=["A1"]),
        spec("A1"),
        spec("B", children=["B1"]),
        spec("B1"),
        spec("F"),
    ], retry_count=0)
    ready(state)
    state.job_ran("R")
    assert ready(state) == {"A", "B"}
    assert state.job_failed("A").action is FAILED
    state.job_ran("B")
    assert ready(state) == {"B1"}
    state.job_ran("B1")
    assert ready(state) == set()  # F waits for A's subtree, which cannot finish
    assert state.take_finished_subtrees() == ["B1", "B"]
    assert state.failed == ["A"]
    assert sorted(state.spec(j).id for j in ("R", "A", "A1", "F")) == ["A", "A1", "F", "R"]
    assert state.unfinished_count() == 4


def test_mark_permanently_failed_records_once_and_uses_up_tries() -> None:
    state = new_state([spec("A")], retry_count=3)
    ready(state)
    state.mark_permanently_failed("A")
    state.mark_permanently_failed("A")
    assert state.failed == ["A"]
    assert state.remaining_tries("A") == 0
    assert ready(state) == set()


def test_requeue_makes_ready_without_using_a_try() -> None:
    state = new_state([spec("A")], retry_count=1)
    ready(state)
    state.requeue("A")
    assert ready(state) == {"A"}
    assert state.remaining_tries("A") == 2
    assert state.failed == []


# -- scale -------------------------------------------------------------------------------------


CHAIN = 10_000


def test_ten_thousand_followon_chain() -> None:
    ids = [f"j{i}" for i in range(CHAIN)]
    specs = [spec(ids[i], followons=[ids[i + 1]] if i + 1 < CHAIN else []) for i in range(CHAIN)]
    state = new_state(specs)
    for job_id in ids:
        assert state.take_ready() == [job_id]
        state.job_ran(job_id)
    assert state.take_ready() == []
    assert state.unfinished_count() == 0
    assert state.finished_count == CHAIN
    finished = state.take_finished_subtrees()
    assert finished == list(reversed(ids))


def test_ten_thousand_child_chain_built_at_run_time() -> None:
    state = new_state([spec("j0")])
    for i in range(CHAIN):
        assert state.take_ready() == [f"j{i}"]
        if i + 1 < CHAIN:
            nxt = f"j{i + 1}"
            state.add_jobs([spec(nxt)], parent=f"j{i}", children=[nxt])
        state.job_ran(f"j{i}")
        if i + 1 < CHAIN:
            # Nothing finishes until the last job: j0 .. j(i+1) are all still open.
            assert state.unfinished_count() == i + 2
    assert state.unfinished_count() == 0
    assert len(state.take_finished_subtrees()) == CHAIN


def test_ten_thousand_dynamic_followons() -> None:
    # Each job adds its follow-on at run time: the subtree of every earlier job stays open.
    state = new_state([spec("j0")])
    for i in range(CHAIN):
        assert state.take_ready() == [f"j{i}"]
        if i + 1 < CHAIN:
            state.add_jobs([spec(f"j{i + 1}")], parent=f"j{i}", followons=[f"j{i + 1}"])
        state.job_ran(f"j{i}")
    assert state.unfinished_count() == 0
    assert state.take_finished_subtrees()[-1] == "j0"


# -- finished nodes -----------------------------------------------------------------------------


def test_finished_nodes_are_dropped() -> None:
    state = new_state([spec("A", children=["B"], followons=["C"]), spec("B"), spec("C")])
    assert state.unfinished_count() == 3
    ready(state)
    state.job_ran("A")
    assert state.unfinished_count() == 3  # A's subtree is not finished
    assert state.is_known("A")
    ready(state)
    state.job_ran("B")
    assert state.unfinished_count() == 2
    assert not state.is_known("B")
    with pytest.raises(GraphError):
        state.spec("B")
    ready(state)
    state.job_ran("C")
    assert state.unfinished_count() == 0
    assert not state.is_known("A")
    assert not state.is_known("C")


def test_finished_subtrees_are_reported_descendants_first() -> None:
    state = new_state([
        spec("R", children=["A", "B"], followons=["F"]),
        spec("A", children=["A1"], followons=["A2"]),
        spec("A1"),
        spec("A2"),
        spec("B"),
        spec("F", children=["G"]),
        spec("G"),
    ])
    reported: list[str] = []
    offered: set[str] = set()
    for job_id in ("R", "B", "A", "A1", "A2", "F", "G"):
        offered |= ready(state)
        assert job_id in offered
        state.job_ran(job_id)
        reported += state.take_finished_subtrees()
    assert reported == ["B", "A1", "A2", "A", "G", "F", "R"]
    assert state.take_finished_subtrees() == []


def test_take_finished_subtrees_only_reports_new_ones() -> None:
    state = new_state([spec("A", children=["B", "C"]), spec("B"), spec("C")])
    ready(state)
    state.job_ran("A")
    assert state.take_finished_subtrees() == []
    state.job_ran("B")
    assert state.take_finished_subtrees() == ["B"]
    state.job_ran("C")
    assert state.take_finished_subtrees() == ["C", "A"]


# -- contradictions ----------------------------------------------------------------------------


def test_unknown_jobs_raise_graph_error() -> None:
    state = new_state([spec("A")])
    for event in (state.job_ran, state.job_failed, state.requeue, state.mark_permanently_failed,
                  state.spec, state.remaining_tries):
        with pytest.raises(GraphError):
            event("nope")


def test_job_finishing_twice_raises() -> None:
    state = new_state([spec("A", children=["B"]), spec("B")])
    ready(state)
    state.job_ran("A")
    with pytest.raises(GraphError):
        state.job_ran("A")  # still known: its subtree is open
    state.job_ran("B")
    with pytest.raises(GraphError):
        state.job_ran("B")  # already dropped
    with pytest.raises(GraphError):
        state.job_ran("A")


def test_adding_a_job_twice_raises() -> None:
    state = new_state([spec("A")])
    with pytest.raises(GraphError):
        state.add_jobs([spec("A")])
    with pytest.raises(GraphError):
        state.add_jobs([spec("X"), spec("X")])


def test_edges_to_unknown_jobs_raise() -> None:
    state = LeaderState(1)
    with pytest.raises(GraphError):
        state.add_jobs([spec("A", children=["ghost"])])
    state = new_state([spec("A")])
    with pytest.raises(GraphError):
        state.add_jobs([spec("B")], parent="ghost", children=["B"])


# -- randomised comparison with a reference model -------------------------------------------------


def _reach(job_id: str, succ: dict[str, list[str]]) -> set[str]:
    seen = {job_id}
    stack = [job_id]
    while stack:
        for nxt in succ[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def random_graph(rng: random.Random, size: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """A random DAG of child and follow-on edges rooted at n0 (may deadlock in the augmented sense)."""
    ids = [f"n{i}" for i in range(size)]
    children: dict[str, list[str]] = {i: [] for i in ids}
    followons: dict[str, list[str]] = {i: [] for i in ids}
    for index in range(1, size):
        parents = rng.sample(range(index), k=min(index, rng.choice([1, 1, 1, 2, 3])))
        for parent in parents:
            kind = children if rng.random() < 0.6 else followons
            kind[ids[parent]].append(ids[index])
    return children, followons


def prerequisites(children: dict[str, list[str]], followons: dict[str, list[str]]) -> dict[str, set[str]]:
    """What must have run before each job may run, by Toil's rules."""
    succ = {j: children[j] + followons[j] for j in children}
    needs: dict[str, set[str]] = {j: set() for j in children}
    for parent in children:
        for child in children[parent]:
            needs[child].add(parent)
        for followon in followons[parent]:
            needs[followon].add(parent)
            for child in children[parent]:
                needs[followon] |= _reach(child, succ)
    return needs


@pytest.mark.parametrize("seed", range(150))
def test_random_graphs_match_reference_model(seed: int) -> None:
    rng = random.Random(seed)
    children, followons = random_graph(rng, rng.randint(2, 14))
    needs = prerequisites(children, followons)
    succ = {j: children[j] + followons[j] for j in children}
    state = new_state([spec(j, children[j], followons[j]) for j in children], retry_count=0)
    ran: set[str] = set()
    offered: set[str] = set()
    finished: set[str] = set()
    while True:
        offered |= ready(state)
        expected = {j for j in children if j not in ran and needs[j] <= ran}
        assert offered - ran == expected
        if not expected:
            break
        job_id = rng.choice(sorted(expected))
        state.job_ran(job_id)
        ran.add(job_id)
        newly = state.take_finished_subtrees()
        assert len(newly) == len(set(newly))
        finished |= set(newly)
        assert finished == {j for j in children if _reach(j, succ) <= ran}
    assert state.unfinished_count() == len(children) - len(finished)
    assert state.finished_count == len(ran)
    if len(ran) == len(children):
        assert state.unfinished_count() == 0


def test_checkpoint_reruns_when_a_job_in_its_subtree_exhausts_its_retries() -> None:
    checkpoint = spec("C")
    checkpoint.checkpoint = True
    state = new_state([spec("R", children=["C"], followons=["F"]), checkpoint, spec("F")], retry_count=1)
    ready(state)
    state.job_ran("R")
    assert ready(state) == {"C"}
    # C's run creates a child G1, which has a grandchild G2.
    state.add_jobs([spec("G1", children=["G2"]), spec("G2")], parent="C", children=["G1"])
    state.job_ran("C")
    assert ready(state) == {"G1"}
    state.job_ran("G1")
    assert ready(state) == {"G2"}
    assert state.job_failed("G2").action is RETRY
    assert ready(state) == {"G2"}
    failure = state.job_failed("G2")
    assert failure.action is FailureAction.CHECKPOINT_RERUN
    assert failure.checkpoint == "C" and set(failure.dropped) == {"G1", "G2"}
    assert state.failed == []
    assert ready(state) == {"C"}
    assert not state.is_known("G1") and not state.is_known("G2")
    assert state.spec("C").body  # kept, so the checkpoint can run again
    # Second run of C succeeds with a new subtree; the workflow finishes.
    state.add_jobs([spec("H")], parent="C", children=["H"])
    state.job_ran("C")
    assert ready(state) == {"H"}
    state.job_ran("H")
    assert ready(state) == {"F"}
    state.job_ran("F")
    assert state.unfinished_count() == 0


def test_checkpoint_out_of_tries_lets_the_failure_stand() -> None:
    checkpoint = spec("C")
    checkpoint.checkpoint = True
    state = new_state([checkpoint], retry_count=0)
    ready(state)
    state.add_jobs([spec("G")], parent="C", children=["G"])
    state.job_ran("C")
    ready(state)
    assert state.job_failed("G").action is FAILED
    assert state.failed == ["G"]


def test_attempts_count_from_one_up_to_retry_count_plus_one() -> None:
    state = new_state([spec("a")], retry_count=2)
    assert ready(state) == {"a"}
    seen = []
    for _ in range(3):
        seen.append(state.attempt("a"))
        action = state.job_failed("a").action
    assert seen == [1, 2, 3]
    assert state.tries == 3
    assert action is FailureAction.FAILED


def test_a_job_that_failed_for_good_before_it_was_taken_is_not_ready() -> None:
    # A worker ran the new child chained, right after its parent, and it failed: the leader
    # hears of the child and of its failure in one report, before it took the child as ready.
    state = new_state([spec("parent")], retry_count=0)
    assert ready(state) == {"parent"}
    state.add_jobs([spec("child")], "parent", ("child",), ())
    state.job_ran("parent")
    assert state.job_failed("child").action is FailureAction.FAILED
    assert ready(state) == set()
    assert state.failed == ["child"]
