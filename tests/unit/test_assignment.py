"""Who runs what: ``plan_assignment`` (properties) and worker health (a controlled clock).

Time enters ``cluster.py`` in two ways. ``WorkerHealth.observe/healthy`` take
``now`` as a parameter, so they are tested with plain numbers; only
``last_contact`` (shown by ``GET /cluster``) reads the wall clock itself.
``Coordinator`` takes a ``clock`` (monotonic seconds), so its tests pass a fake.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler0.daemon import cluster
from scheduler0.daemon.cluster import (
    CAUGHT_UP_ENTRIES,
    HEARTBEAT_DEADLINE,
    RETURN_AFTER,
    Coordinator,
    CoordinatorSettings,
    WorkerHealth,
    plan_assignment,
)
from scheduler0.daemon.state.schema import BUCKETS

pytestmark = pytest.mark.unit

# -- plan_assignment ------------------------------------------------------------------------

node_ids = st.integers(min_value=1, max_value=9)
owner_ids = st.integers(min_value=0, max_value=9)  # 0: no owner yet (a fresh cluster)
workers_st = st.lists(node_ids, min_size=1, max_size=8)


@st.composite
def owners_st(draw: st.DrawFn) -> list[int]:
    """Small assignments of any shape, or full-size ones made of runs (what
    earlier plans look like)."""
    if draw(st.booleans()):
        return draw(st.lists(owner_ids, min_size=1, max_size=60))
    runs = draw(st.lists(st.tuples(owner_ids, st.integers(1, 300)), min_size=1, max_size=12))
    owners = [owner for owner, length in runs for _ in range(length)]
    owners = (owners * (BUCKETS // len(owners) + 1))[:BUCKETS]
    if draw(st.booleans()):
        random.Random(draw(st.integers(0, 2**16))).shuffle(owners)
    return owners


def counts(plan: list[int], workers: list[int]) -> dict[int, int]:
    held = Counter(plan)
    return {w: held[w] for w in set(workers)}


def moved(before: list[int], after: list[int]) -> int:
    return sum(a != b for a, b in zip(before, after, strict=True))


def fewest_moves(owners: list[int], workers: list[int]) -> int:
    """The least number of buckets any balanced plan must move: each worker
    ends with ``base`` or ``base + 1`` buckets (``extra`` of them with one
    more); a worker keeps at most its final count of the buckets it holds, and
    the ``+1`` places are best given to workers holding more than ``base``."""
    distinct = set(workers)
    base, extra = divmod(len(owners), len(distinct))
    held = Counter(owners)
    stay = sum(min(held[w], base) for w in distinct)
    stay += min(extra, sum(1 for w in distinct if held[w] > base))
    return len(owners) - stay


@settings(max_examples=200, deadline=None)
@given(owners_st(), workers_st)
def test_every_bucket_goes_to_a_worker_and_the_load_is_even(
    owners: list[int], workers: list[int]
) -> None:
    plan = plan_assignment(owners, workers)
    assert len(plan) == len(owners)
    assert set(plan) <= set(workers)
    load = counts(plan, workers)
    assert max(load.values()) - min(load.values()) <= 1
    assert sum(load.values()) == len(owners)


@settings(max_examples=200, deadline=None)
@given(owners_st(), workers_st)
def test_buckets_move_only_from_workers_over_their_share(
    owners: list[int], workers: list[int]
) -> None:
    """A worker keeps as many of its buckets as its new share allows (all of
    them while under quota); buckets move only off non-workers and over-quota
    workers, onto workers that gain: no bucket moves twice over."""
    plan = plan_assignment(owners, workers)
    before, after = Counter(owners), counts(plan, workers)
    for w in set(workers):
        kept = sum(1 for o, p in zip(owners, plan, strict=True) if o == p == w)
        assert kept == min(before[w], after[w]), f"worker {w}"
        if before[w] <= len(owners) // len(set(workers)):
            assert kept == before[w], f"worker {w} is under quota and lost a bucket"
    gained = sum(max(0, after[w] - before[w]) for w in set(workers))
    assert moved(owners, plan) == gained


@settings(max_examples=150, deadline=None)
@given(owners_st(), workers_st, st.randoms(use_true_random=False))
def test_the_plan_is_deterministic_and_stable(
    owners: list[int], workers: list[int], rnd: random.Random
) -> None:
    owners_copy, workers_copy = list(owners), list(workers)
    plan = plan_assignment(owners, workers)
    assert (owners, workers) == (owners_copy, workers_copy), "inputs mutated"
    # The same workers in any order, repeated or not: the same plan.
    shuffled = workers + rnd.sample(workers, k=len(workers))
    rnd.shuffle(shuffled)
    assert plan_assignment(owners, shuffled) == plan
    assert plan_assignment(list(owners), list(workers)) == plan
    # Planning again changes nothing, so the leader proposes no new epoch.
    assert plan_assignment(plan, workers) == plan


@settings(max_examples=100, deadline=None)
@given(owners_st())
def test_without_workers_the_assignment_is_kept(owners: list[int]) -> None:
    plan = plan_assignment(owners, [])
    assert plan == owners
    assert plan is not owners


def test_a_returning_worker_gets_its_share_back() -> None:
    spread = plan_assignment([0] * BUCKETS, [2, 3, 4])
    assert Counter(spread) == {2: 342, 3: 341, 4: 341}
    without_2 = plan_assignment(spread, [3, 4])
    assert Counter(without_2) == {3: 512, 4: 512}
    assert moved(spread, without_2) == 342  # only node 2's buckets
    back = plan_assignment(without_2, [2, 3, 4])
    assert sorted(Counter(back).values()) == [341, 341, 342]
    assert Counter(back)[2] == 341  # the newcomer takes the smaller share: fewer moves
    assert all(p == 2 for o, p in zip(without_2, back, strict=True) if o != p)


def test_the_plan_moves_no_more_buckets_than_needed() -> None:
    # Already balanced (node 2 has the extra bucket): nothing needs to move.
    assert moved([2, 2, 1], plan_assignment([2, 2, 1], [1, 2])) == fewest_moves([2, 2, 1], [1, 2])
    # The returning node 2 needs 341 buckets, not 342.
    without_2 = plan_assignment(plan_assignment([0] * BUCKETS, [2, 3, 4]), [3, 4])
    back = plan_assignment(without_2, [2, 3, 4])
    assert moved(without_2, back) == fewest_moves(without_2, [2, 3, 4]) == 341


@settings(max_examples=200, deadline=None)
@given(owners_st(), workers_st)
def test_the_plan_moves_exactly_as_few_buckets_as_needed(
    owners: list[int], workers: list[int]
) -> None:
    plan = plan_assignment(owners, workers)
    assert moved(owners, plan) == fewest_moves(owners, workers)


# -- WorkerHealth ---------------------------------------------------------------------------

A = "10.0.0.2:7070"


def test_an_unknown_worker_is_not_healthy() -> None:
    health = WorkerHealth()
    assert not health.healthy(A, 100.0, currently_owner=True)
    assert not health.healthy(A, 100.0, currently_owner=False)


def test_a_newcomer_gets_buckets_after_staying_up_for_return_after() -> None:
    health = WorkerHealth()
    for now in (100.0, 100.3, 100.6, 100.9):  # repeated "up" keeps the first time
        health.observe(A, True, now)
        assert not health.healthy(A, now, currently_owner=False)
    assert not health.healthy(A, 100.0 + RETURN_AFTER - 0.001, currently_owner=False)
    assert health.healthy(A, 100.0 + RETURN_AFTER, currently_owner=False)
    # Down once: the wait starts over, and a down worker never gets buckets.
    health.observe(A, False, 102.0)
    assert not health.healthy(A, 150.0, currently_owner=False)
    health.observe(A, True, 103.0)
    assert not health.healthy(A, 103.5, currently_owner=False)
    assert health.healthy(A, 104.0, currently_owner=False)


def test_an_owner_keeps_its_buckets_until_down_past_the_deadline() -> None:
    health = WorkerHealth()
    health.observe(A, True, 100.0)
    assert health.healthy(A, 100.0, currently_owner=True)  # no wait for an owner that is up
    for now in (101.0, 101.5, 102.0):
        health.observe(A, False, now)  # only the first "down" starts the clock
    assert health.healthy(A, 101.0 + HEARTBEAT_DEADLINE - 0.001, currently_owner=True)
    assert not health.healthy(A, 101.0 + HEARTBEAT_DEADLINE, currently_owner=True)
    # Back up: an owner is healthy at once; had it lost its buckets, it would wait.
    health.observe(A, True, 103.0)
    assert health.healthy(A, 103.0, currently_owner=True)
    assert not health.healthy(A, 103.0, currently_owner=False)


def test_forget_drops_the_history_of_an_earlier_term() -> None:
    health = WorkerHealth()
    health.observe(A, True, 100.0)
    health.forget()
    assert not health.healthy(A, 200.0, currently_owner=True)


def test_last_contact_is_wall_clock_time_of_the_last_up(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(wall=1_800_000_000.0)
    monkeypatch.setattr(cluster, "time", clock)
    health = WorkerHealth()
    health.observe(A, True, 5.0)
    assert health.last_contact == {A: 1_800_000_000.0}
    clock.wall += 3
    health.observe(A, False, 8.0)
    assert health.last_contact == {A: 1_800_000_000.0}


# -- Coordinator.workers: raft status -> healthy workers -------------------------------------


class FakeClock(SimpleNamespace):
    """Stands in for the ``time`` module inside ``cluster``."""

    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        super().__init__(wall=wall, mono=mono)

    def time(self) -> float:
        return float(self.wall)

    def monotonic(self) -> float:
        return float(self.mono)


MEMBERS = [
    {"node_id": 1, "raft_address": "n1:7070"},  # the leader itself
    {"node_id": 2, "raft_address": "n2:7070"},
    {"node_id": 3, "raft_address": "n3:7070"},
    {"node_id": 4, "raft_address": "n4:7070"},  # recorded, but not a raft partner (yet)
]


def coordinator(
    status: dict[str, Any],
    owners: list[int],
    clock: FakeClock | None = None,
    *,
    writes: Any = None,
    queries: Any = None,
) -> Coordinator:
    """A leader (node 1) whose log reports ``status``; its clock is ``clock``;
    ``writes`` and ``queries`` (default: nothing, the ``MEMBERS``) stand in
    for the proposer and the reads."""
    settings = CoordinatorSettings(
        node_id=1,
        address="http://n1",
        raft_address="n1:7070",
        replicas=(),
        retention_rows=0,
        retention_seconds=0.0,
        retention_per_job=0,
    )
    return Coordinator(
        settings,
        log=SimpleNamespace(status=lambda: status),  # type: ignore[arg-type]
        writes=writes or SimpleNamespace(),
        assignment=SimpleNamespace(owners=owners, epoch=1),
        queries=queries or SimpleNamespace(members=lambda: MEMBERS),
        clock=(clock or FakeClock()).monotonic,
    )


def test_a_node_without_partners_is_its_own_worker() -> None:
    assert coordinator({"partners_connected": {}}, [0] * BUCKETS).workers() == [1]
    assert coordinator({}, [0] * BUCKETS).workers() == [1]


def test_workers_are_connected_and_caught_up_partners() -> None:
    clock = FakeClock()
    status: dict[str, Any] = {
        "commit_index": 1000,
        "partners_connected": {"n2:7070": True, "n3:7070": True},
        "partners_match_index": {"n2:7070": 1000 - CAUGHT_UP_ENTRIES, "n3:7070": 500},
    }
    coord = coordinator(status, [0] * BUCKETS, clock)  # nobody owns anything yet
    assert coord.workers() == []  # newcomers wait RETURN_AFTER
    clock.mono += RETURN_AFTER
    # n2 is exactly CAUGHT_UP_ENTRIES behind: caught up. n3 is behind; n4 is no partner.
    assert coord.workers() == [2]
    status["partners_match_index"]["n3:7070"] = 1000
    clock.mono += 0.5
    assert coord.workers() == [2]  # n3 just came up
    clock.mono += RETURN_AFTER
    assert coord.workers() == [2, 3]
    # Disconnected, or trailing by one entry more: down.
    status["partners_connected"]["n3:7070"] = False
    status["partners_match_index"]["n2:7070"] = 1000 - CAUGHT_UP_ENTRIES - 1
    clock.mono += 0.1
    assert coord.workers() == []


def test_an_owner_that_drops_stays_a_worker_until_the_deadline() -> None:
    clock = FakeClock()
    status: dict[str, Any] = {
        "commit_index": None,  # no commit yet counts as 0
        "partners_connected": {"n2:7070": True, "n3:7070": True},
        "partners_match_index": {},
    }
    coord = coordinator(status, [2] * (BUCKETS // 2) + [3] * (BUCKETS // 2), clock)
    assert coord.workers() == [2, 3]  # owners that are up: no wait
    status["partners_connected"]["n2:7070"] = False
    start = clock.mono
    assert coord.workers() == [2, 3]
    clock.mono = start + HEARTBEAT_DEADLINE - 0.01
    assert coord.workers() == [2, 3]
    clock.mono = start + HEARTBEAT_DEADLINE
    assert coord.workers() == [3]


# -- Coordinator.declare_dead_workers_lost: only the unreachable lose their executions -----


def test_only_a_member_unreachable_past_the_deadline_has_its_executions_declared_lost() -> None:
    """Node 2 is connected but no worker (it just led, or lost its buckets): it is
    alive and settles what it sent, so nothing of it is declared lost until raft
    has been disconnected from it for the heartbeat deadline. Node 4 is recorded
    but no raft partner: its executions are declared lost at once."""
    clock = FakeClock()
    status: dict[str, Any] = {
        "commit_index": 10,
        "partners_connected": {"n2:7070": True, "n3:7070": True},
        "partners_match_index": {"n2:7070": 10, "n3:7070": 10},
    }
    dispatched = {2: [(7, 100), (8, 100)], 3: [(9, 100)], 4: [(5, 90)]}
    proposed: list[Any] = []

    async def propose(command: Any) -> None:
        proposed.append(command)

    queries = SimpleNamespace(
        members=lambda: MEMBERS,
        departed_member_ids=list,
        unsettled=lambda state, node_id: [
            {"job_id": j, "slot": s} for j, s in dispatched.get(node_id, [])
        ],
    )
    writes = SimpleNamespace(propose=propose)
    coord = coordinator(status, [3] * BUCKETS, clock, writes=writes, queries=queries)

    def declared() -> list[list[list[int]]]:
        asyncio.run(coord.declare_dead_workers_lost(coord.workers()))
        out = [command.executions for command in proposed]
        proposed.clear()
        return out

    assert coord.workers() == [3]  # node 2 is up but waits RETURN_AFTER for buckets
    assert declared() == [[[5, 90]]]  # node 4 only: no raft partner
    dispatched.pop(4)
    clock.mono += RETURN_AFTER + 5
    status["partners_connected"]["n2:7070"] = False
    assert declared() == []  # node 2 just dropped
    clock.mono += HEARTBEAT_DEADLINE - 0.01
    assert declared() == []
    clock.mono += 0.01
    assert declared() == [[[7, 100], [8, 100]]]
    # Back before the deadline: nothing.
    status["partners_connected"]["n2:7070"] = True
    assert declared() == []


def test_a_removed_nodes_dispatched_executions_are_declared_lost_once_it_is_gone() -> None:
    """Node 5 was removed (departed, no longer a member): while raft still
    reaches it, it is alive and settling its runs itself, and nothing is
    declared; once it has been out of reach for the heartbeat deadline, the
    runs it left ``dispatched`` are declared lost, once. Added back, it is
    left alone."""
    clock = FakeClock()
    status: dict[str, Any] = {
        "commit_index": 10,
        "partners_connected": {"n2:7070": True, "n3:7070": True, "n5:7070": True},
        "partners_match_index": {"n2:7070": 10, "n3:7070": 10, "n5:7070": 10},
    }
    members = [*MEMBERS[:3], {"node_id": 5, "raft_address": "n5:7070"}]
    departed: list[int] = []
    dispatched = {5: [(11, 200), (12, 201)]}
    proposed: list[Any] = []

    async def propose(command: Any) -> None:
        proposed.append(command)

    queries = SimpleNamespace(
        members=lambda: list(members),
        departed_member_ids=lambda: list(departed),
        unsettled=lambda state, node_id: [
            {"job_id": j, "slot": s} for j, s in dispatched.get(node_id, [])
        ],
    )
    coord = coordinator(
        status, [3] * BUCKETS, clock, writes=SimpleNamespace(propose=propose), queries=queries
    )

    def declared() -> list[list[list[int]]]:
        asyncio.run(coord.declare_dead_workers_lost(coord.workers()))
        out = [command.executions for command in proposed]
        proposed.clear()
        return out

    assert declared() == []  # a member, connected
    members.pop()
    departed.append(5)
    clock.mono += 10 * HEARTBEAT_DEADLINE
    assert declared() == []  # removed, but still connected: it settles its own runs
    status["partners_connected"]["n5:7070"] = False
    assert declared() == []  # just gone
    clock.mono += HEARTBEAT_DEADLINE
    assert declared() == [[[11, 200], [12, 201]]]
    assert declared() == []  # once
    departed.clear()  # added back: a member again
    assert declared() == []
    departed.append(5)  # and removed again, while down: a new deadline
    assert declared() == []
    clock.mono += HEARTBEAT_DEADLINE
    assert declared() == [[[11, 200], [12, 201]]]
