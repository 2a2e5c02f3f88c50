"""A removed node stops: by its own MemberLeft, or, when it missed that, because a
member further along the log no longer lists it (asked only once it lost its leader)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scheduler0.daemon.peers import drops_me
from scheduler0.daemon.watch import Watch

pytestmark = pytest.mark.unit

ME = 1


class Fixture:
    def __init__(self) -> None:
        self.now = 100.0
        self.leader: str | None = "127.0.0.1:7001"
        self.ready = True
        self.members = [{"node_id": n, "address": f"http://n{n}"} for n in (1, 2, 3)]
        self.witness: int | None = None
        self.departed: list[int] = []
        self.asked = 0
        self.stopped = 0
        self.watch = Watch(
            node_id=ME,
            raft=lambda: {"ready": self.ready, "leader": self.leader, "state": "follower"},
            buckets=lambda: (0, 1),
            members=lambda: self.members,
            departed=lambda: self.departed,
            over_memory=lambda: False,
            stop_node=self._stop,
            removal_witness=self._ask,
            orphan_after=3.0,
            clock=lambda: self.now,
        )

    def _stop(self) -> None:
        self.stopped += 1

    async def _ask(self) -> int | None:
        self.asked += 1
        return self.witness

    def step(self, seconds: float = 0.0) -> None:
        self.now += seconds
        self.watch.check()
        asyncio.run(self.watch.check_orphaned())


def test_a_node_that_applies_its_own_removal_stops() -> None:
    f = Fixture()
    f.step()
    f.members = [m for m in f.members if m["node_id"] != ME]
    f.step()
    assert f.stopped == 1
    assert f.asked == 0


def test_a_node_removed_before_it_saw_itself_a_member_stops_by_its_departure() -> None:
    f = Fixture()
    f.members = [m for m in f.members if m["node_id"] != ME]
    f.step()
    assert f.stopped == 0  # not registered yet: a new node waits to be added
    f.departed = [ME]  # its MemberLeft applied, without a look at it as a member
    f.step()
    assert f.stopped == 1
    assert f.asked == 0


def test_a_node_with_a_leader_never_asks_the_others() -> None:
    f = Fixture()
    f.witness = 2
    for _ in range(10):
        f.step(5.0)
    assert (f.asked, f.stopped) == (0, 0)


def test_a_leaderless_node_asks_only_after_orphan_after_seconds() -> None:
    f = Fixture()
    f.step()
    f.leader = None
    f.step()
    f.step(2.9)
    assert f.asked == 0
    f.step(0.2)
    assert f.asked == 1


def test_a_leaderless_node_that_a_member_drops_stops_once() -> None:
    f = Fixture()
    f.step()
    f.leader = None
    f.witness = 3
    f.step()
    f.step(3.0)
    f.step(10.0)
    assert (f.asked, f.stopped) == (1, 1)


def test_a_leaderless_node_still_listed_keeps_running_and_asks_again_later() -> None:
    f = Fixture()
    f.step()
    f.leader = None
    f.step()
    f.step(3.0)
    f.step(1.0)
    assert (f.asked, f.stopped) == (1, 0)
    f.step(2.0)
    assert (f.asked, f.stopped) == (2, 0)
    f.leader = "127.0.0.1:7002"  # a leader again: the clock restarts
    f.step()
    f.leader = None
    f.step(0.1)
    f.step(2.9)
    assert f.asked == 2


def test_a_node_restarted_after_its_removal_asks_although_never_ready() -> None:
    """No leader ever sends it the log, so raft never says ready."""
    f = Fixture()
    f.ready, f.leader, f.witness = False, None, 2
    f.step()
    f.step(3.0)
    assert (f.asked, f.stopped) == (1, 1)


def test_a_new_node_not_added_yet_keeps_running() -> None:
    """Started before an operator added it: leaderless, asks, but no member lists
    it as departed, so nothing proves a removal."""
    f = Fixture()
    f.members = []
    f.ready, f.leader, f.witness = False, None, None
    f.step()
    f.step(3.0)
    f.step(3.0)
    assert (f.asked, f.stopped) == (2, 0)


def status(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "node_id": 2,
        "reachable": True,
        "member_ids": [2, 3],
        "departed_member_ids": [ME],
        "raft": {"leader": "127.0.0.1:7002"},
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("peer", "proves"),
    [
        (status(), True),
        (status(departed_member_ids=[]), False),  # never a member (a node not added yet)
        (status(member_ids=[1, 2, 3]), False),  # added back since: lists this node
        (status(raft={"leader": None}), False),  # follows no leader
        (status(member_ids=[3]), False),  # does not list itself: not a current member
        (status(departed_member_ids=None), False),  # an older node without the field
        (status(reachable=False), False),
    ],
)
def test_what_proves_a_removal(peer: dict[str, Any], proves: bool) -> None:
    assert drops_me(peer, ME) is proves
