"""One contract, every ``ReplicatedLog``: the pysyncobj adapter (a real
single-member raft on 127.0.0.1, its journal and snapshot on disk) and the
in-memory log, both applying to a real ``StateMachine`` on a SQLite file.

Each test states a rule written on the interface (``daemon/replication.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.memory_log import InMemoryLog
from scheduler0.daemon.replication import ReplicatedLog
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.schema import remove_database
from scheduler0.errors import Conflict, NotCommitted
from tests.support.nodes import free_port, wait_until
from tests.support.raft import start_raft

pytestmark = pytest.mark.contract

NOW = 1_800_000_000.0
KINDS = ("memory", "raft")


@dataclass
class Member:
    """A log under test, with what it takes to restart it on the same files."""

    log: ReplicatedLog
    machine: StateMachine
    data: Path
    restart: Callable[[], Member]
    address: str

    def close(self) -> None:
        self.log.stop()
        self.machine.close()


def _raft(data: Path, port: int, partners: list[str], wait_leader: bool = True) -> Member:
    db = data / "state.db"
    remove_database(db)  # as the node does at every start
    machine = StateMachine(db)
    address = f"127.0.0.1:{port}"
    log = start_raft(
        data,
        address,
        partners,
        machine,
        password="contract",
        snapshot_min_entries=10,
        snapshot_min_time=0.2,
    )
    if wait_leader:
        wait_until(lambda: log.ready and log.is_leader(), timeout=20, what="a raft leader")
    return Member(log, machine, data, lambda: _raft(data, port, partners), address)


def _memory(data: Path, log: InMemoryLog | None = None) -> Member:
    db = data / "state.db"
    remove_database(db)
    machine = StateMachine(db)
    if log is None:
        log = InMemoryLog(machine, snapshot_dir=data)
        log.start()
    else:
        log.restart(lambda: machine)
    memory_log = log
    return Member(log, machine, data, lambda: _memory(data, memory_log), log.address)


@pytest.fixture(params=KINDS)
def member(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Member]:
    made = _raft(tmp_path, free_port(), []) if request.param == "raft" else _memory(tmp_path)
    try:
        yield made
    finally:
        made.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def project(name: str) -> c.ProjectCreated:
    return c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s")


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_propose_answers_the_apply_result_on_the_event_loop(member: Member) -> None:
    async def scenario() -> tuple[Any, bool]:
        result = await member.log.propose(project("a"))
        return result, threading.current_thread() is threading.main_thread()

    result, on_loop_thread = run(scenario())
    assert result == {"id": 1}
    assert on_loop_thread


def test_a_domain_error_is_raised_typed_and_changes_nothing(member: Member) -> None:
    run(member.log.propose(project("a")))
    with pytest.raises(Conflict, match="already exists"):
        run(member.log.propose(project("a")))
    assert rows(member.data / "state.db", "SELECT id, name FROM projects") == [(1, "a")]


def test_commands_of_one_caller_apply_in_the_order_proposed(member: Member) -> None:
    async def scenario() -> list[Any]:
        return list(
            await asyncio.gather(*(member.log.propose(project(f"p{i}")) for i in range(20)))
        )

    results = run(scenario())
    assert [r["id"] for r in results] == list(range(1, 21))
    names = rows(member.data / "state.db", "SELECT name FROM projects ORDER BY id")
    assert [n for (n,) in names] == [f"p{i}" for i in range(20)]


def test_after_a_barrier_everything_committed_before_it_is_applied(member: Member) -> None:
    async def scenario() -> None:
        await member.log.propose(project("before"))
        await member.log.barrier()

    run(scenario())
    assert rows(member.data / "state.db", "SELECT name FROM projects") == [("before",)]


def test_a_single_member_leads_and_says_so(member: Member) -> None:
    assert member.log.ready
    assert member.log.is_leader()
    assert member.log.leader_address() == member.address
    status = member.log.status()
    for key in ("state", "leader", "has_quorum", "term", "commit_index", "applied_index"):
        assert key in status, key
    assert status["state"] == "leader" and status["has_quorum"] is True
    assert status["partners_connected"] == {}


def test_a_single_member_has_no_one_to_hand_its_leadership_to(member: Member) -> None:
    with pytest.raises(NotCommitted, match="no follower"):
        run(member.log.hand_over_leadership(1.0))
    assert member.log.is_leader()
    assert run(member.log.propose(project("still leading")))["id"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_without_quorum_a_write_is_not_committed_within_its_timeout(
    kind: str, tmp_path: Path
) -> None:
    if kind == "raft":
        # Two members configured, one never started: no leader can be elected.
        made = _raft(tmp_path, free_port(), [f"127.0.0.1:{free_port()}"], wait_leader=False)
    else:
        made = _memory(tmp_path)
        assert isinstance(made.log, InMemoryLog)
        made.log.cut_off()
    try:
        started = time.monotonic()
        with pytest.raises(NotCommitted):
            run(made.log.propose(project("a"), timeout=0.5))
        assert time.monotonic() - started < 2.0
        assert not made.log.is_leader()
        assert rows(tmp_path / "state.db", "SELECT COUNT(*) FROM projects") == [(0,)]
    finally:
        made.close()


def test_a_stopped_log_refuses_proposals(member: Member) -> None:
    member.log.stop()
    with pytest.raises(NotCommitted):
        run(member.log.propose(project("a"), timeout=0.5))


def test_a_restart_rebuilds_from_snapshot_and_journal_applying_each_command_once(
    member: Member,
) -> None:
    async def create(names: list[str]) -> None:
        for name in names:
            await member.log.propose(project(name))

    run(create([f"a{i}" for i in range(30)]))
    if isinstance(member.log, InMemoryLog):
        member.log.snapshot()
    else:
        wait_until(lambda: (member.data / "raft.snapshot").exists(), 20, what="a snapshot")
    run(create([f"b{i}" for i in range(10)]))
    before = rows(member.data / "state.db", "SELECT id, name FROM projects ORDER BY id")
    assert len(before) == 40
    member.close()

    again = member.restart()
    try:
        # Applied twice, a ProjectCreated would conflict or add a row; never, one would be missing.
        after = rows(again.data / "state.db", "SELECT id, name FROM projects ORDER BY id")
        assert after == before
        assert run(again.log.propose(project("after"))) == {"id": 41}
    finally:
        again.close()
