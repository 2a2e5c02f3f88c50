"""A raft snapshot is pinned on the apply thread and written beside it.

``pin_snapshot`` opens a read transaction on its own connection between two
applies; ``PinnedSnapshot.write`` copies that state later, on another thread,
while apply goes on. These tests hold the copy in the middle of its backup
(after its first step of one page), apply more commands meanwhile, and check
the file holds exactly the state, digest and raft data of the pinned index.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state import machine as machine_module
from scheduler0.daemon.state.machine import PinnedSnapshot, SnapshotCancelled, StateMachine

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
RAFT_DATA = ("last entry", "entry before", {"members"})
WAIT = 30.0


def job(i: int) -> dict[str, Any]:
    return {
        "project_id": 1,
        "spec": "@every 1s",
        "timezone": "UTC",
        "data": "x" * 200 + str(i),
        "callback_url": "http://127.0.0.1:1/cb",
        "anchor": int(NOW),
    }


class Applier:
    """Applies commands with consecutive raft indexes and keeps them for a replay."""

    def __init__(self, machine: StateMachine) -> None:
        self.machine = machine
        self.log: list[bytes] = []

    def __call__(self, command: c.Command) -> Any:
        payload = c.encode(command)
        self.log.append(payload)
        outcome = self.machine.apply(payload, len(self.log))
        assert "ok" in outcome, outcome
        return outcome["ok"]


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db)
    try:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name NOT IN ('_raft', '_digest') ORDER BY name"
            )
        ]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def wal_fully_checkpointed(db: Path) -> bool:
    """A passive checkpoint moved every frame of the WAL into the database:
    no read transaction holds an older state."""
    conn = sqlite3.connect(db)
    try:
        _, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return bool(frames == done)
    finally:
        conn.close()


class HeldCopy:
    """Holds every ``PinnedSnapshot.write`` after its first backup step until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.copying = threading.Event()
        self.release = threading.Event()
        original = PinnedSnapshot._progress

        def progress(pin: PinnedSnapshot, status: int, remaining: int, total: int) -> None:
            if remaining > 0 and not self.release.is_set():
                self.copying.set()
                assert self.release.wait(WAIT), "the test never released the copy"
            original(pin, status, remaining, total)

        monkeypatch.setattr(machine_module, "BACKUP_STEP_PAGES", 1)
        monkeypatch.setattr(PinnedSnapshot, "_progress", progress)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[StateMachine, Applier]]:
    machine = StateMachine(tmp_path / "a.db")
    apply = Applier(machine)
    apply(c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
    for i in range(20):
        apply(c.JobsCreated(now=NOW + i, jobs=[job(i * 10 + k) for k in range(10)]))
    yield machine, apply
    machine.close()


def test_a_snapshot_written_while_apply_goes_on_holds_the_state_at_its_index(
    source: tuple[StateMachine, Applier], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine, apply = source
    held = HeldCopy(monkeypatch)
    pinned_at = len(apply.log)
    state_at_pin = dump(machine.db_path)
    digest_at_pin = machine.digest()

    pin = machine.pin_snapshot(RAFT_DATA)
    assert pin.index == pinned_at and pin.pinned_seconds < 1.0
    path = tmp_path / "raft.snapshot"
    errors: list[BaseException] = []

    def write() -> None:
        try:
            pin.write(str(path))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    copy = threading.Thread(target=write)
    copy.start()
    try:
        assert held.copying.wait(WAIT), "the copy never started"
        # Apply goes on while the copy is held: new jobs, changed and deleted rows.
        for i in range(10):
            apply(c.JobsCreated(now=NOW + 100 + i, jobs=[job(1000 + i)]))
        for job_id in (1, 2, 3):
            apply(c.JobDeleted(now=NOW + 200, job_id=job_id))
        apply(c.ProjectUpdated(now=NOW + 200, project_id=1, description="changed"))
        apply(c.AssignmentChanged(now=NOW + 201, epoch=1, owners=[1] * 1024))
        assert copy.is_alive()  # the copy is still held: apply did not wait for it
        assert not wal_fully_checkpointed(machine.db_path)  # the pin holds the old state
    finally:
        held.release.set()
        copy.join(WAIT)
    assert not copy.is_alive() and errors == []
    assert wal_fully_checkpointed(machine.db_path)  # the pin was released

    restored = StateMachine(tmp_path / "b.db")
    try:
        assert restored.load_snapshot(str(path)) == RAFT_DATA
        assert dump(restored.db_path) == state_at_pin
        assert restored.digest()["index"] == digest_at_pin["index"] == pinned_at
        assert restored.digest()["digest"] == digest_at_pin["digest"]
        # The journal after the snapshot, applied to it, gives the same state.
        for index, payload in enumerate(apply.log[pinned_at:], start=pinned_at + 1):
            assert "ok" in restored.apply(payload, index)
        assert dump(restored.db_path) == dump(machine.db_path)
        assert restored.digest()["digest"] == machine.digest()["digest"]
        assert restored.epoch == machine.epoch == 1
    finally:
        restored.close()


def test_a_cancelled_snapshot_stops_and_releases_its_pin(
    source: tuple[StateMachine, Applier], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine, apply = source
    held = HeldCopy(monkeypatch)
    pin = machine.pin_snapshot(RAFT_DATA)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            pin.write(str(tmp_path / "raft.snapshot.tmp"))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    copy = threading.Thread(target=write)
    copy.start()
    try:
        assert held.copying.wait(WAIT), "the copy never started"
        apply(c.JobDeleted(now=NOW + 200, job_id=4))
        pin.cancel()
    finally:
        held.release.set()
        copy.join(WAIT)
    assert not copy.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], SnapshotCancelled)
    assert pin.cancelled
    assert wal_fully_checkpointed(machine.db_path)


def test_a_pin_is_taken_at_the_last_committed_index(tmp_path: Path) -> None:
    """A command that fails validation commits nothing (nor its index): the pin
    is still the state of the last command that committed, and the machine
    knows that index after a restart from its file."""
    machine = StateMachine(tmp_path / "a.db")
    try:
        apply = Applier(machine)
        apply(c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
        outcome = machine.apply(c.encode(c.JobDeleted(now=NOW, job_id=99)), 2)
        assert "error" in outcome
        pin = machine.pin_snapshot(RAFT_DATA)
        pin.close()
        assert pin.index == 1
    finally:
        machine.close()
    again = StateMachine(tmp_path / "a.db")
    try:
        pin = again.pin_snapshot(RAFT_DATA)
        pin.close()
        assert pin.index == 1
    finally:
        again.close()
