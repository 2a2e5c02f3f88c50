"""A real 3-member pysyncobj cluster on 127.0.0.1: the members apply a
committed entry side by side. The leader tells its followers an entry is
committed before it applies the entry itself, so a long apply on the leader
(9,000 fires at once) does not hold every follower's apply behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.schema import remove_database
from tests.support.nodes import free_port, wait_until
from tests.support.raft import start_raft

NOW = 1_800_000_000.0
GATE_SECONDS = 3.0
"""How long the leader's apply waits for its followers' (a pass takes ms)."""


class GatedMachine(StateMachine):
    """A real state machine whose ``apply`` first waits (bounded) for
    ``gate`` to hold, when one is set, and records whether it did."""

    def __init__(self, db: Path) -> None:
        super().__init__(db)
        self.gate: Callable[[], bool] | None = None
        self.gate_held: list[bool] = []

    def apply(self, payload: bytes, index: int | None = None) -> dict[str, Any]:
        gate = self.gate
        if gate is not None:
            try:
                wait_until(gate, GATE_SECONDS, interval=0.005, what="the followers' apply")
                self.gate_held.append(True)
            except TimeoutError:
                self.gate_held.append(False)
        return super().apply(payload, index)


class Member:
    def __init__(self, data: Path, address: str, partners: list[str]) -> None:
        data.mkdir()
        remove_database(data / "state.db")
        self.machine = GatedMachine(data / "state.db")
        self.log = start_raft(data, address, partners, self.machine, password="order")

    def close(self) -> None:
        self.log.stop()
        self.machine.close()


@pytest.fixture
def members(tmp_path: Path) -> Iterator[list[Member]]:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    started: list[Member] = []
    try:
        for i, address in enumerate(addresses):
            others = [a for a in addresses if a != address]
            started.append(Member(tmp_path / f"n{i}", address, others))
        yield started
    finally:
        for member in started:
            member.close()


def project(name: str) -> c.ProjectCreated:
    return c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s")


def test_followers_apply_an_entry_while_the_leader_is_still_applying_it(
    members: list[Member],
) -> None:
    wait_until(lambda: any(m.log.ready and m.log.is_leader() for m in members), 20, what="a leader")
    leader = next(m for m in members if m.log.is_leader())
    followers = [m for m in members if m is not leader]
    asyncio.run(leader.log.propose(project("first")))
    applied = leader.machine.applied_commands
    wait_until(
        lambda: all(f.machine.applied_commands == applied for f in followers),
        20,
        what="the followers caught up",
    )
    term = leader.log.status()["term"]
    entry = leader.machine.applied_commands + 1
    leader.machine.gate = lambda: all(f.machine.applied_commands >= entry for f in followers)

    result = asyncio.run(leader.log.propose(project("second")))

    assert result == {"id": 2}
    assert leader.machine.gate_held == [True]  # both followers applied it first...
    # ...told by this leader, not by one elected while it applied
    assert [f.log.status()["term"] for f in followers] == [term, term]
    assert leader.log.is_leader() and leader.log.status()["term"] == term
