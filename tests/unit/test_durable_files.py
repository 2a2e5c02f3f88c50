"""Acknowledged means on disk: the files behind it.

A snapshot carries a seal (its size and SHA-256); a torn, truncated or damaged
snapshot is refused at load with one CRITICAL line naming the file and halts
the replica, instead of being loaded or silently skipped. An unsealed snapshot
(older, or seeded by ``scheduler0 restore``) loads if SQLite finds it whole.

The raft journal (pysyncobj's file format): a tail torn by a power cut is cut
back to the last whole entry; a compaction replaces the file whole.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from pysyncobj import journal as pysyncobj_journal

from scheduler0.daemon import raft
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import ApplyHalted, StateMachine
from scheduler0.daemon.state.snapshot_file import (
    TRAILER,
    SnapshotCorrupt,
    seal_snapshot,
    verify_snapshot,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
RAFT_DATA = ("last entry", "entry before", {"members"})


def project(name: str) -> bytes:
    return c.encode(c.ProjectCreated(now=NOW, name=name, description="d" * 200, signing_secret="s"))


def snapshot_of(tmp_path: Path, projects: int = 50) -> Path:
    machine = StateMachine(tmp_path / "source.db")
    for i in range(projects):
        machine.apply(project(f"p{i}"))
    path = tmp_path / "raft.snapshot"
    machine.save_snapshot(str(path), RAFT_DATA)
    machine.close()
    return path


def project_names(machine: StateMachine) -> list[str]:
    conn = sqlite3.connect(machine.db_path)
    try:
        return [n for (n,) in conn.execute("SELECT name FROM projects ORDER BY id")]
    finally:
        conn.close()


def test_a_sealed_snapshot_verifies_and_loads(tmp_path: Path) -> None:
    path = snapshot_of(tmp_path)
    assert verify_snapshot(path) is True
    machine = StateMachine(tmp_path / "restored.db")
    assert machine.load_snapshot(str(path)) == RAFT_DATA
    assert project_names(machine) == [f"p{i}" for i in range(50)]
    assert machine.halted is None
    machine.close()


def flip_a_byte(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def truncate_half(path: Path) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


def zero_a_page(path: Path) -> None:
    """What a power cut leaves when a page of the file never reached the disk."""
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(bytes(4096))


def drop_the_seal(path: Path) -> None:
    """Torn exactly where the database ends: the seal is gone, the database whole."""
    os.truncate(path, os.path.getsize(path) - TRAILER.size)


@pytest.mark.parametrize("damage", [flip_a_byte, truncate_half, zero_a_page])
def test_a_damaged_snapshot_is_refused_with_one_critical_line_naming_it(
    tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = snapshot_of(tmp_path)
    damage(path)  # type: ignore[operator]
    machine = StateMachine(tmp_path / "restored.db")
    machine.apply(project("before"))  # what the replica held must stay as it was
    with caplog.at_level(logging.CRITICAL), pytest.raises(SnapshotCorrupt) as caught:
        machine.load_snapshot(str(path))
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1, [r.getMessage() for r in critical]
    message = critical[0].getMessage()
    assert str(path) in message and "cannot be loaded" in message and "stops" in message
    assert str(path) in str(caught.value)
    # The replica is halted: it applies nothing more, so the node exits.
    assert machine.halted is not None and str(path) in machine.halted
    with pytest.raises(ApplyHalted):
        machine.apply(project("after"))
    assert project_names(machine) == ["before"]
    machine.close()


def test_the_seal_catches_a_flipped_byte_that_sqlite_itself_would_read(tmp_path: Path) -> None:
    """Damage inside a row's text leaves a well-formed database: only the seal sees it."""
    path = snapshot_of(tmp_path)
    data = path.read_bytes()
    at = data.index(b"d" * 200)
    path.write_bytes(data[:at] + b"e" + data[at + 1 :])
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    finally:
        conn.close()
    with pytest.raises(SnapshotCorrupt, match="SHA-256"):
        verify_snapshot(path)


def test_an_unsealed_whole_snapshot_loads_and_an_unsealed_damaged_one_is_refused(
    tmp_path: Path,
) -> None:
    path = snapshot_of(tmp_path)
    drop_the_seal(path)
    assert verify_snapshot(path) is False
    machine = StateMachine(tmp_path / "restored.db")
    assert machine.load_snapshot(str(path)) == RAFT_DATA
    assert len(project_names(machine)) == 50
    machine.close()

    truncate_half(path)
    machine = StateMachine(tmp_path / "again.db")
    with pytest.raises(SnapshotCorrupt):
        machine.load_snapshot(str(path))
    assert machine.halted is not None
    machine.close()


def test_seal_verifies_what_was_sealed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10_000)
    seal_snapshot(path)
    assert os.path.getsize(path) == 10_000 + TRAILER.size
    assert verify_snapshot(path) is True
    with open(path, "ab") as f:
        f.write(b"more")  # the size no longer matches the seal's (and the seal is not last)
    assert verify_snapshot(path) is False


# --- the raft journal -------------------------------------------------------------------


@pytest.fixture
def durable_journal(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "raft.journal")
    raft._DURABLE_JOURNALS.add(path)
    yield path
    raft._DURABLE_JOURNALS.discard(path)


def entries(journal: object) -> list[tuple[bytes, int, int]]:
    return [journal[i] for i in range(len(journal))]  # type: ignore[index,arg-type]


def test_the_journal_syncs_only_what_was_written_since_the_last_sync(
    durable_journal: str,
) -> None:
    journal = pysyncobj_journal.createJournal(durable_journal)
    assert isinstance(journal, raft._DurableJournal)
    assert journal.durable and not journal.dirty
    journal.add(b"\x00one", 1, 1)
    assert journal.dirty
    assert journal.sync() is True
    assert not journal.dirty and journal.sync() is False
    for i in range(2, 200):  # grows the file (fallocate): synced with an fsync too
        journal.add(b"\x00" + b"e" * 100, i, 1)
    assert journal.file.grown and journal.sync() is True and not journal.file.grown
    journal._destroy()


def test_a_torn_journal_tail_is_cut_back_to_the_last_whole_entry(
    durable_journal: str, caplog: pytest.LogCaptureFixture
) -> None:
    journal = pysyncobj_journal.createJournal(durable_journal)
    for i in range(1, 11):
        journal.add(b"\x00entry-%d" % i, i, 1)
    whole = entries(journal)
    journal._destroy()
    # A power cut: the header counts 120 bytes more, whose page never reached
    # the disk but for a stray size field (a record half written).
    data = bytearray(Path(durable_journal).read_bytes())
    (end,) = struct.unpack_from("<I", data, pysyncobj_journal.LAST_RECORD_OFFSET_OFFSET)
    struct.pack_into("<I", data, end + 60, 40)
    struct.pack_into("<I", data, pysyncobj_journal.LAST_RECORD_OFFSET_OFFSET, end + 120)
    Path(durable_journal).write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        reopened = pysyncobj_journal.createJournal(durable_journal)
    assert entries(reopened) == whole
    assert any("not whole entries" in r.getMessage() for r in caplog.records)
    reopened.add(b"\x00entry-11", 11, 1)  # and it appends after the last whole entry
    reopened._destroy()
    again = pysyncobj_journal.createJournal(durable_journal)
    assert entries(again) == [*whole, (b"\x00entry-11", 11, 1)]
    again._destroy()


def test_a_whole_journal_is_left_as_it_is(durable_journal: str) -> None:
    journal = pysyncobj_journal.createJournal(durable_journal)
    for i in range(1, 50):
        journal.add(b"\x00entry", i, 2)
    journal._destroy()
    before = Path(durable_journal).read_bytes()
    reopened = pysyncobj_journal.createJournal(durable_journal)
    assert len(reopened) == 49
    reopened._destroy()
    assert Path(durable_journal).read_bytes() == before


def test_compaction_replaces_the_journal_file_whole(durable_journal: str) -> None:
    journal = pysyncobj_journal.createJournal(durable_journal)
    for i in range(1, 101):
        journal.add(b"\x00entry-%d" % i, i, 3)
    inode = os.stat(durable_journal).st_ino
    journal.deleteEntriesTo(90)
    assert [e[1] for e in entries(journal)] == list(range(91, 101))
    assert os.stat(durable_journal).st_ino != inode  # a new file, renamed over the old one
    assert not os.path.exists(durable_journal + ".compact")
    journal.add(b"\x00entry-101", 101, 3)
    journal._destroy()
    reopened = pysyncobj_journal.createJournal(durable_journal)
    assert [e[1] for e in entries(reopened)] == list(range(91, 102))
    assert reopened[0] == (b"\x00entry-91", 91, 3)
    reopened._destroy()


def test_the_meta_file_is_replaced_durably(durable_journal: str) -> None:
    journal = pysyncobj_journal.createJournal(durable_journal)
    journal.setCurrentTerm(7, "node-2")
    journal._destroy()
    reopened = pysyncobj_journal.createJournal(durable_journal)
    assert (reopened.getCurrentTerm(), reopened.getVotedForNodeId()) == (7, "node-2")
    assert not os.path.exists(durable_journal + ".meta.tmp")
    reopened._destroy()
