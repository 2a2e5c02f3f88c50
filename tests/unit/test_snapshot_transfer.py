"""A snapshot sent by the leader in chunks: a torn one never becomes the current one.

pysyncobj marks a transfer's chunks only first and last, and a leader resumes
a transfer it left half-sent when it lost leadership, without a first chunk,
when it wins again. A follower that started another leader's transfer in
between appends the rest of the old one to it. These tests drive pysyncobj's
own serializer on both sides, chunk by chunk, through that interleaving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.serializer import Serializer

from scheduler0.daemon.raft import _CheckedSerializer, incoming_snapshot_path
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.snapshot_file import SnapshotCorrupt, check_snapshot

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
CHUNK = 4096
FOLLOWER = "node 2"


def sealed_snapshot(directory: Path, projects: int) -> Path:
    """A real snapshot (SQLite plus seal) of a state holding ``projects`` projects."""
    directory.mkdir()
    machine = StateMachine(directory / "state.db")
    for i in range(projects):
        machine.apply(
            c.encode(
                c.ProjectCreated(now=NOW, name=f"p{i}", description="d" * 300, signing_secret="s")
            )
        )
    path = directory / "raft.snapshot"
    machine.save_snapshot(str(path), ("last", "before", {"members"}))
    machine.close()
    return path


OPEN: list[Any] = []


def serializer(cls: type[Serializer], path: Path) -> Any:
    made = cls(str(path), CHUNK, False, None, None, None)
    OPEN.append(made)
    return made


def leader(path: Path) -> Any:
    """A leader's side, which resumes a half-sent transfer as pysyncobj's does
    (``_CheckedSerializer`` only adds closing a finished transfer's file)."""
    return serializer(_CheckedSerializer, path)


@pytest.fixture(autouse=True)
def close_transfers() -> Iterator[None]:
    """A leader keeps the file of a half-sent transfer open (that is the bug):
    close what the test left open."""
    yield
    while OPEN:
        made = OPEN.pop()
        for transmission in made._Serializer__transmissions.values():
            transmission["file"].close()
        incoming = made._Serializer__incomingTransmissionFile
        if incoming is not None:
            incoming.close()


def send(leader: Any, follower: Any, chunks: int | None = None) -> list[bool]:
    """Send ``chunks`` chunks (all that are left if None) of the leader's
    transfer to FOLLOWER; what the follower's ``setTransmissionData`` said."""
    results: list[bool] = []
    while chunks is None or len(results) < chunks:
        data = leader.getTransmissionData(FOLLOWER)
        results.append(follower.setTransmissionData(data))
        if data[2]:  # the last chunk
            break
    return results


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Leader A's snapshot, leader B's (smaller) and the follower's current one."""
    return (
        sealed_snapshot(tmp_path / "a", projects=400),
        sealed_snapshot(tmp_path / "b", projects=300),
        sealed_snapshot(tmp_path / "follower", projects=10),
    )


def interleave(leader_a: Any, leader_b: Any, follower: Any) -> list[bool]:
    """B, leader first, sends part of its snapshot and loses leadership; A wins
    and sends part of its own (its first chunk restarts the follower's file);
    A dies; B wins again and resumes its old transfer where it left it."""
    send(leader_b, follower, chunks=3)
    send(leader_a, follower, chunks=20)
    return send(leader_b, follower)


def test_stock_pysyncobj_installs_the_torn_mix_of_two_transfers(
    cluster: tuple[Path, Path, Path],
) -> None:
    """The mechanism behind "N bytes before its seal, the seal says M"."""
    a, b, current = cluster
    follower = serializer(Serializer, current)
    results = interleave(leader(a), leader(b), follower)
    assert results[-1] is True  # pysyncobj renamed it over the snapshot and loads it
    with pytest.raises(SnapshotCorrupt, match="bytes before its seal, the seal says"):
        check_snapshot(current)


def test_a_torn_received_snapshot_is_discarded_and_the_current_one_kept(
    cluster: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, current = cluster
    before = current.read_bytes()
    follower = serializer(_CheckedSerializer, current)
    leader_b = leader(b)
    with caplog.at_level(logging.WARNING, logger="scheduler0.daemon.raft"):
        results = interleave(leader(a), leader_b, follower)
    assert results[-1] is False  # pysyncobj does not load it
    assert current.read_bytes() == before
    assert not Path(incoming_snapshot_path(str(current))).exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "incomplete or damaged" in warnings[0].getMessage()
    assert "bytes before its seal" in warnings[0].getMessage()

    # The leader finds the follower behind and sends a snapshot again, whole.
    assert send(leader(b), follower)[-1] is True
    assert current.read_bytes() == b.read_bytes()
    check_snapshot(current)


def test_a_leader_that_cancels_its_transfers_restarts_them_at_the_first_chunk(
    cluster: tuple[Path, Path, Path],
) -> None:
    """What a node does on winning an election (``_ReplicatedLog``)."""
    a, _, _ = cluster
    leader_a = leader(a)
    for _ in range(3):
        leader_a.getTransmissionData(FOLLOWER)
    leader_a.cancel_outgoing()
    chunk, is_first, is_last = leader_a.getTransmissionData(FOLLOWER)
    assert (is_first, is_last) == (True, False)
    assert chunk == a.read_bytes()[:CHUNK]


def test_a_follower_drops_a_half_received_snapshot_when_the_leader_changes(
    cluster: tuple[Path, Path, Path],
) -> None:
    a, b, current = cluster
    before = current.read_bytes()
    follower = serializer(_CheckedSerializer, current)
    incoming = Path(incoming_snapshot_path(str(current)))
    send(leader(a), follower, chunks=5)
    assert incoming.exists()
    follower.abort_incoming()
    assert not incoming.exists()
    # The rest of any transfer is ignored until one starts at its first chunk.
    leader_b = leader(b)
    leader_b.getTransmissionData(FOLLOWER)  # its first chunk, lost with the old leader
    results = send(leader_b, follower)
    assert len(results) > 1
    assert not any(results)
    assert not incoming.exists()
    assert current.read_bytes() == before


class HeldPin:
    """A state pinned for the follower's own snapshot, whose write is held."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._cancelled = threading.Event()

    def write(self, path: str) -> None:
        Path(path).write_bytes(b"the follower's own snapshot")
        assert self.release.wait(30), "the test never released the write"

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def close(self) -> None:
        pass


def test_a_snapshot_received_while_writing_its_own_is_not_replaced_by_it(
    cluster: tuple[Path, Path, Path],
) -> None:
    """A follower's own snapshot is written on a thread; the leader's, received
    meanwhile, replaces the current one, and the follower's own (older) is
    then dropped instead of being renamed over it. While its own is written,
    the node sends no snapshot (pysyncobj would send the file being replaced)."""
    a, _, current = cluster
    pin = HeldPin()
    follower = _CheckedSerializer(str(current), CHUNK, False, lambda path, data: pin, None, None)
    OPEN.append(follower)
    follower.serialize((None, "before", "last", {"members"}), 7)
    try:
        assert follower.checkSerializing() == (SERIALIZER_STATE.SERIALIZING, 7)
        assert follower.getTransmissionData("node 3") is None
        assert send(leader(a), follower)[-1] is True  # installed: pysyncobj loads it
    finally:
        pin.release.set()
        follower._background.thread.join(30)
    assert pin.cancelled
    assert follower.checkSerializing() == (SERIALIZER_STATE.FAILED, 7)  # no compaction for it
    assert current.read_bytes() == a.read_bytes()
    assert not Path(str(current) + ".tmp").exists()
    assert follower.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)


def test_a_snapshot_of_its_own_replaces_the_current_one_once_written(
    cluster: tuple[Path, Path, Path],
) -> None:
    _, _, current = cluster
    pin = HeldPin()
    follower = _CheckedSerializer(str(current), CHUNK, False, lambda path, data: pin, None, None)
    OPEN.append(follower)
    follower.serialize((None, "before", "last", {"members"}), 7)
    pin.release.set()
    follower._background.thread.join(30)
    assert follower.checkSerializing() == (SERIALIZER_STATE.SUCCESS, 7)
    assert current.read_bytes() == b"the follower's own snapshot"
