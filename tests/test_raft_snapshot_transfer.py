"""A real 3-member pysyncobj cluster on 127.0.0.1: a member that joins behind
the leader's snapshot receives it through the checking serializer, whole; a
follower held for seconds by its disk does not depose its leader."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.raft import _CheckedSerializer
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.schema import remove_database
from tests.support.nodes import free_port, wait_until
from tests.support.raft import start_raft

NOW = 1_800_000_000.0


class Member:
    def __init__(self, data: Path, address: str, partners: list[str]) -> None:
        data.mkdir()
        remove_database(data / "state.db")
        self.data = data
        self.machine = StateMachine(data / "state.db")
        self.log = start_raft(
            data,
            address,
            partners,
            self.machine,
            password="transfer",
            snapshot_min_entries=10,
            snapshot_min_time=0.5,
        )

    def projects(self) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.data / "state.db")
        try:
            return conn.execute("SELECT id, name FROM projects ORDER BY id").fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        self.log.stop()
        self.machine.close()


@pytest.fixture
def started() -> Iterator[list[Member]]:
    members: list[Member] = []
    yield members
    for member in members:
        member.close()


def behind_the_leaders_snapshot(tmp_path: Path, started: list[Member]) -> list[tuple[Any, ...]]:
    """Two of three members up, 40 projects written and the leader's journal
    compacted: a member with an empty log can only catch up by its snapshot.
    Starts the third member; returns the leader's projects."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    for i in (0, 1):
        others = [a for a in addresses if a != addresses[i]]
        started.append(Member(tmp_path / f"n{i}", addresses[i], others))
    wait_until(lambda: any(m.log.ready and m.log.is_leader() for m in started), 20, what="a leader")
    leader = next(m for m in started if m.log.is_leader())

    async def create() -> None:
        for i in range(40):
            await leader.log.propose(
                c.ProjectCreated(now=NOW, name=f"p{i}", description="", signing_secret="s")
            )

    asyncio.run(create())
    wait_until(
        lambda: leader.log._sync._SyncObj__raftLog[0][1] > 2,  # type: ignore[union-attr]
        20,
        what="the leader's journal compacted after a snapshot",
    )
    expected = leader.projects()
    assert len(expected) == 40
    others = [a for a in addresses if a != addresses[2]]
    started.append(Member(tmp_path / "n2", addresses[2], others))
    return expected


def test_a_member_behind_the_leaders_snapshot_installs_it_whole(
    tmp_path: Path, started: list[Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed: list[str] = []
    original = _CheckedSerializer.setTransmissionData

    def recording(self: _CheckedSerializer, data: Any) -> bool:
        done: bool = original(self, data)
        if done:
            installed.append(self._Serializer__fileName)
        return done

    monkeypatch.setattr(_CheckedSerializer, "setTransmissionData", recording)
    expected = behind_the_leaders_snapshot(tmp_path, started)
    late = started[-1]
    wait_until(lambda: late.projects() == expected, 30, what="the late member caught up")
    assert str(tmp_path / "n2" / "raft.snapshot") in installed
    assert not (tmp_path / "n2" / "raft.snapshot.1.tmp").exists()


def test_a_torn_snapshot_is_discarded_and_the_member_is_sent_one_again(
    tmp_path: Path,
    started: list[Member],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first snapshot the late member receives loses the end of its first
    chunk on the way (a gap, as when two transfers mix): it is discarded with
    a WARNING, and the member catches up from the next one."""
    late_snapshot = str(tmp_path / "n2" / "raft.snapshot")
    torn: list[int] = []
    original = _CheckedSerializer.setTransmissionData

    def tearing(self: _CheckedSerializer, data: Any) -> bool:
        if self._Serializer__fileName == late_snapshot and data is not None:
            chunk, is_first, is_last = data
            if is_first and not torn:
                torn.append(len(chunk))
                data = (chunk[:-100], is_first, is_last)
        done: bool = original(self, data)
        return done

    monkeypatch.setattr(_CheckedSerializer, "setTransmissionData", tearing)
    with caplog.at_level(logging.WARNING, logger="scheduler0.daemon.raft"):
        expected = behind_the_leaders_snapshot(tmp_path, started)
        late = started[-1]
        wait_until(lambda: late.projects() == expected, 30, what="the late member caught up")
    assert len(torn) == 1
    discarded = [r for r in caplog.records if "incomplete or damaged" in r.getMessage()]
    assert len(discarded) == 1
    assert discarded[0].levelno == logging.WARNING
    assert "bytes before its seal" in discarded[0].getMessage()


def test_a_follower_held_for_seconds_by_its_disk_calls_no_election(
    tmp_path: Path, started: list[Member]
) -> None:
    """A follower's journal flush takes 2 s once (a slow disk), past its
    election timeout (0.4-1.4 s). pysyncobj checks the deadline at the start
    of the next tick, before it reads the heartbeats the leader sent
    meanwhile; the follower counts the stall as heard-from and stays a
    follower: no new term, the same leader."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    for i in range(3):
        others = [a for a in addresses if a != addresses[i]]
        started.append(Member(tmp_path / f"n{i}", addresses[i], others))
    wait_until(lambda: all(m.log.ready for m in started), 20, what="every member ready")
    leader = wait_until(
        lambda: next((m for m in started if m.log.is_leader()), None), 20, what="a leader"
    )

    def write(name: str) -> None:
        command = c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s")
        asyncio.run(leader.log.propose(command))

    write("before")
    term = leader.log.status()["term"]
    follower = next(m for m in started if m is not leader)
    transport = follower.log._sync._SyncObj__transport  # type: ignore[union-attr]
    release = transport.release
    held: list[float] = []

    def slow_release() -> None:
        if not held:
            held.append(time.monotonic())
            time.sleep(2.0)
        release()

    transport.release = slow_release
    write("during")
    wait_until(lambda: held and time.monotonic() > held[0] + 5.0, 10, what="5 s after the stall")
    write("after")
    statuses = [m.log.status() for m in started]
    assert [s["term"] for s in statuses] == [term] * 3, statuses
    assert leader.log.is_leader()
    wait_until(lambda: follower.projects() == leader.projects(), 10, what="the follower in step")
