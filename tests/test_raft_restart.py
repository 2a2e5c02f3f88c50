"""A real single-node pysyncobj log: restart rebuilds SQLite from snapshot + journal."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.raft import RaftLog, RaftOptions, _CheckedSerializer
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
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
