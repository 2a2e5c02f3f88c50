"""A real single-node pysyncobj log: restart rebuilds SQLite from snapshot + journal."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import SyncObjConf

from scheduler0.daemon import raft as raft_module
from scheduler0.daemon.raft import (
    SNAPSHOT_SPACING,
    RaftLog,
    RaftOptions,
    _CheckedSerializer,
    _DurableJournal,
    _space_snapshots,
)
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state import machine as machine_module
from scheduler0.daemon.state.machine import PinnedSnapshot, StateMachine
from scheduler0.daemon.state.schema import remove_database
from tests.support.nodes import free_port, wait_until

NOW = 1_800_000_000.0


def _start(data: Path, port: int, min_entries: int) -> tuple[RaftLog, StateMachine]:
    db = data / "state.db"
    remove_database(db)  # as the node does at every start
    machine = StateMachine(db)
    raft = RaftLog(
        RaftOptions(
            self_address=f"127.0.0.1:{port}",
            partner_addresses=[],
            data_dir=data,
            password="test",
            apply_timeout=5.0,
            snapshot_min_entries=min_entries,
            snapshot_min_time=0.5,
        ),
        machine,
    )
    raft.start()
    wait_until(lambda: raft.ready and raft.is_leader(), timeout=20, what="single-node leader")
    return raft, machine


def _propose(raft: RaftLog, command: c.Command) -> Any:
    return asyncio.run(raft.propose(command, timeout=10))


def _jobs(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id, data, created_at FROM jobs ORDER BY id").fetchall()
    finally:
        conn.close()


def _create_job(raft: RaftLog, i: int) -> Any:
    job = {
        "project_id": 1,
        "spec": "@every 1s",
        "timezone": "UTC",
        "data": str(i),
        "callback_url": "http://127.0.0.1:1/cb",
        "anchor": int(NOW),
    }
    return _propose(raft, c.JobsCreated(now=NOW + i, jobs=[job]))


def test_restart_applies_every_command_exactly_once(tmp_path: Path) -> None:
    port = free_port()
    raft, machine = _start(tmp_path, port, min_entries=20)
    try:
        _propose(raft, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
        for i in range(60):
            _create_job(raft, i)
        # A snapshot is taken once enough entries have piled up.
        wait_until(lambda: (tmp_path / "raft.snapshot").exists(), timeout=20, what="snapshot")
        for i in range(60, 80):
            _create_job(raft, i)
        before = _jobs(tmp_path / "state.db")
    finally:
        raft.stop()
        machine.close()
    assert len(before) == 80

    raft, machine = _start(tmp_path, port, min_entries=20)
    try:
        # Applied twice, a JobsCreated would add a second job; never, one would be missing.
        assert _jobs(tmp_path / "state.db") == before
        assert _create_job(raft, 99)["ids"] == [81, 81]
    finally:
        raft.stop()
        machine.close()


def test_a_half_received_snapshot_is_dropped_at_start_and_a_new_leader_cancels_old_transfers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The node's serializer is the checking one, pysyncobj calls its hooks on
    an election and on winning it, and a snapshot the node was receiving when
    it stopped (never its snapshot) is deleted at start with a WARNING."""
    calls: list[str] = []
    for hook in ("abort_incoming", "cancel_outgoing"):
        original = getattr(_CheckedSerializer, hook)
        monkeypatch.setattr(
            _CheckedSerializer,
            hook,
            lambda self, _hook=hook, _original=original: (calls.append(_hook), _original(self))[1],
        )
    half = tmp_path / "raft.snapshot.1.tmp"
    half.write_bytes(b"\x01" * 5000)
    with caplog.at_level(logging.WARNING, logger="scheduler0.daemon.raft"):
        raft, machine = _start(tmp_path, free_port(), min_entries=20)
    try:
        serializer = raft._sync._SyncObj__serializer  # type: ignore[union-attr]
        assert type(serializer) is _CheckedSerializer
        assert serializer.durable is True  # FlushBeforeAck: fsynced before the rename
        assert calls == ["abort_incoming", "cancel_outgoing"]  # became candidate, then leader
        assert not half.exists()
        assert any("raft.snapshot.1.tmp" in r.getMessage() for r in caplog.records)
        _propose(raft, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
    finally:
        raft.stop()
        machine.close()


def _inode(path: Path) -> int | None:
    """The file at ``path`` (a rename over it changes it), or None."""
    return path.stat().st_ino if path.exists() else None


def _snapshot_digest(path: Path) -> tuple[int, int]:
    """(commands applied, jobs) in a snapshot file."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        applied = conn.execute("SELECT applied FROM _digest").fetchone()[0]
        jobs = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        return int(applied), int(jobs)
    finally:
        conn.close()


class _HeldSnapshots:
    """Holds every snapshot's copy after its first backup step (one page) until
    released; records each pin's (commands applied, jobs) as the raft thread took it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, machine: StateMachine) -> None:
        self.copying = threading.Event()
        self.release = threading.Event()
        self.pins: list[tuple[int, int]] = []
        progress = PinnedSnapshot._progress
        pin = machine.pin_snapshot

        def held(snapshot: PinnedSnapshot, status: int, remaining: int, total: int) -> None:
            if remaining > 0 and not self.release.is_set():
                self.copying.set()
                deadline = time.monotonic() + 30
                while not (self.release.wait(0.01) or snapshot.cancelled):
                    assert time.monotonic() < deadline, "the test never released the snapshot"
            progress(snapshot, status, remaining, total)

        def pinned(data: Any) -> PinnedSnapshot:
            snapshot = pin(data)
            self.pins.append((snapshot.applied, len(_jobs(machine.db_path))))
            return snapshot

        monkeypatch.setattr(machine_module, "BACKUP_STEP_PAGES", 1)
        monkeypatch.setattr(PinnedSnapshot, "_progress", held)
        monkeypatch.setattr(machine, "pin_snapshot", pinned)


def test_a_snapshot_is_written_while_the_log_goes_on_committing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raft thread only pins the state: while the copy is held, writes go
    on committing; the snapshot then holds the state of its index, the journal
    is compacted to it, and a restart from both converges."""
    port = free_port()
    snapshot = tmp_path / "raft.snapshot"
    raft, machine = _start(tmp_path, port, min_entries=20)
    held = _HeldSnapshots(monkeypatch, machine)
    try:
        _propose(raft, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
        for i in range(60):
            _create_job(raft, i)
            if held.copying.is_set():
                break
        assert held.copying.wait(20), "no snapshot started"
        serializer = raft._sync._SyncObj__serializer  # type: ignore[union-attr]
        previous = _inode(snapshot)  # one may have been taken at start, before the hook
        for i in range(100, 140):  # committed while the copy is held
            _create_job(raft, i)
        assert _inode(snapshot) == previous and serializer._background is not None
        assert Path(str(snapshot) + ".tmp").exists()
        held.release.set()
        wait_until(lambda: _inode(snapshot) != previous, timeout=20, what="the snapshot renamed")
        applied, jobs = held.pins[0]
        assert _snapshot_digest(snapshot) == (applied, jobs)
        assert len(_jobs(tmp_path / "state.db")) >= jobs + 40  # the 40 came after the pin
        # The journal is compacted up to the snapshot's entry, not beyond.
        wait_until(
            lambda: raft.status()["log_length"] < 40 + 20, timeout=20, what="journal compaction"
        )
        before = _jobs(tmp_path / "state.db")
    finally:
        held.release.set()
        raft.stop()
        machine.close()

    monkeypatch.undo()
    raft, machine = _start(tmp_path, port, min_entries=1000)
    try:
        assert _jobs(tmp_path / "state.db") == before
        last = before[-1][0]
        assert _create_job(raft, 999)["ids"] == [last + 1, last + 1]
    finally:
        raft.stop()
        machine.close()


def test_a_node_stopped_while_writing_a_snapshot_keeps_its_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping the log cancels the snapshot being written: no file is renamed
    over the snapshot, the temporary file goes, and the journal (never
    compacted for it) rebuilds every write at the restart."""
    port = free_port()
    snapshot = tmp_path / "raft.snapshot"
    raft, machine = _start(tmp_path, port, min_entries=20)
    held = _HeldSnapshots(monkeypatch, machine)
    try:
        _propose(raft, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
        for i in range(60):
            _create_job(raft, i)
            if held.copying.is_set():
                break
        assert held.copying.wait(20), "no snapshot started"
        previous = _inode(snapshot)  # one may have been taken at start, before the hook
        _create_job(raft, 100)
        before = _jobs(tmp_path / "state.db")
    finally:
        raft.stop()  # cancels the held copy: released by cancelling, not by the test
        machine.close()
    assert _inode(snapshot) == previous
    assert not Path(str(snapshot) + ".tmp").exists()

    monkeypatch.undo()
    raft, machine = _start(tmp_path, port, min_entries=1000)
    try:
        assert _jobs(tmp_path / "state.db") == before
    finally:
        raft.stop()
        machine.close()


def test_own_snapshots_are_spaced_by_a_multiple_of_the_last_ones_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a snapshot of its own is in place, the node waits at least
    ``SNAPSHOT_SPACING`` times its duration before the next (here a spacing
    so large that none follows), and never less than ``RaftSnapshotInterval``."""
    monkeypatch.setattr(raft_module, "SNAPSHOT_SPACING", 100_000.0)
    took: list[float] = []

    def recording(conf: Any) -> Any:  # installed as the SyncObj is built
        spaced = _space_snapshots(conf)

        def recorded(seconds: float) -> None:
            took.append(seconds)
            spaced(seconds)

        return recorded

    monkeypatch.setattr(raft_module, "_space_snapshots", recording)
    raft, machine = _start(tmp_path, free_port(), min_entries=1_000_000)  # by time alone
    try:
        conf = raft._sync._SyncObj__conf  # type: ignore[union-attr]
        _propose(raft, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
        wait_until(lambda: took, timeout=20, what="a snapshot of its own (interval 0.5 s)")
        assert took[0] > 0
        assert conf.logCompactionMinTime == max(0.5, 100_000.0 * took[0])
        for i in range(30):
            _create_job(raft, i)
        assert len(took) == 1  # no other: the next is at least 100,000 times as far
    finally:
        raft.stop()
        machine.close()


def test_snapshot_spacing_never_goes_below_the_configured_interval() -> None:
    conf = SyncObjConf(logCompactionMinTime=15)
    spaced = _space_snapshots(conf)
    spaced(0.2)  # 4 s < 15 s
    assert conf.logCompactionMinTime == 15
    spaced(2.5)
    assert conf.logCompactionMinTime == 2.5 * SNAPSHOT_SPACING
    spaced(0.1)  # back to small: back to the interval
    assert conf.logCompactionMinTime == 15


def test_a_node_stopped_before_compacting_for_its_snapshot_keeps_every_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot is renamed into place, then the node stops before a tick
    compacts the journal for it (here: the compaction never comes). The
    journal still starts before the snapshot; at the restart every entry after
    the snapshot is applied, none dropped with the older ones."""
    monkeypatch.setattr(raft_module, "SNAPSHOT_SPACING", 1_000_000.0)  # one snapshot only
    monkeypatch.setattr(_DurableJournal, "deleteEntriesTo", lambda self, entry_to: None)
    port = free_port()
    snapshot = tmp_path / "raft.snapshot"
    raft, machine = _start(tmp_path, port, min_entries=1_000_000)  # by time (0.5 s) alone
    try:
        _propose(raft, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
        created = iter(range(10_000))

        def snapshot_with_jobs() -> bool:
            _create_job(raft, next(created))
            if not snapshot.exists():
                return False
            if _snapshot_digest(snapshot)[1] > 0:
                return True
            # A first snapshot taken before any job (a slow start) spaced the
            # next one a million times its duration: bring the interval back.
            raft._sync._SyncObj__conf.logCompactionMinTime = 0.5
            return False

        wait_until(snapshot_with_jobs, timeout=20, what="a snapshot holding jobs")
        in_snapshot = _snapshot_digest(snapshot)[1]
        for i in range(100_000, 100_030):
            _create_job(raft, i)
        assert _snapshot_digest(snapshot)[1] == in_snapshot  # the 30 are in the journal only
        before = _jobs(tmp_path / "state.db")
        assert len(before) >= in_snapshot + 30
        assert raft.status()["log_length"] > len(before)  # never compacted
    finally:
        raft.stop()
        machine.close()

    monkeypatch.undo()
    raft, machine = _start(tmp_path, port, min_entries=1_000_000)
    try:
        wait_until(
            lambda: raft.status()["applied_index"] >= raft.status()["commit_index"] > 0,
            timeout=20,
            what="the journal replayed",
        )
        assert _jobs(tmp_path / "state.db") == before
    finally:
        raft.stop()
        machine.close()
