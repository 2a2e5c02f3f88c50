"""Backup files without a running node: the container, the copy at one raft
index under concurrent apply, and ``scheduler0 restore`` refusing what it must
(a damaged file, an unknown format version, a used data dir, another SecretKey)."""

from __future__ import annotations

import os
import pickle
import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scheduler0.backup import (
    FORMAT_VERSION,
    MAGIC,
    RESTORED_LOST_ERROR,
    BackupHeader,
    file_sha256,
    key_check,
    read_header,
    write_container,
)
from scheduler0.cli.main import app
from scheduler0.daemon.security import hash_secret
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.copy import copy_replica
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.schema import BUCKETS

pytestmark = pytest.mark.unit

SECRET_KEY = "0" * 64
NOW = 1_800_000_000.0
T0 = int(NOW)


def ok(machine: StateMachine, command: c.Command, index: int) -> Any:
    result = machine.apply(c.encode(command), index)
    assert "ok" in result, result
    return result["ok"]


def make_replica(path: Path) -> StateMachine:
    """Raft indexes 2..8: an assignment, a member, a project, a credential, 3
    jobs; slots of jobs 1 and 2 fired (job 1's settled, job 2's still in flight)."""
    machine = StateMachine(path)
    commands: list[c.Command] = [
        c.AssignmentChanged(now=NOW, epoch=3, owners=[2] * BUCKETS),
        c.MemberJoined(now=NOW, node_id=2, address="http://old:9092", raft_address="old:7072"),
        c.ProjectCreated(now=NOW, name="p", description="", signing_secret="whsec_kept"),
        c.CredentialCreated(now=NOW, api_key="s0k_k", secret_hash=hash_secret(SECRET_KEY, "s")),
        c.JobsCreated(
            now=NOW,
            jobs=[
                {
                    "project_id": 1,
                    "spec": "@every 1s",
                    "timezone": "UTC",
                    "data": None,
                    "callback_url": "http://127.0.0.1:9/cb",
                    "execution_type": "http",
                    "anchor": T0,
                }
            ]
            * 3,
        ),
        c.SlotsFired(now=NOW + 5, node_id=2, epoch=3, fires=[[1, T0 + 5], [2, T0 + 5]]),
        c.ResultsRecorded(
            now=NOW + 6, node_id=2, groups=[[T0 + 5, "success", 200, 1, 3, None, [1]]]
        ),
    ]
    for index, command in enumerate(commands, start=2):
        ok(machine, command, index)
    return machine


def make_backup(tmp_path: Path, secret_key: str = SECRET_KEY) -> tuple[Path, BackupHeader]:
    machine = make_replica(tmp_path / "state.db")
    copy = copy_replica(tmp_path / "state.db", tmp_path / "payload.db")
    machine.close()
    sha256, size = file_sha256(copy.path)
    header = BackupHeader(
        created_at=copy.pinned_at,
        source_node_id=1,
        source_address="http://old:9091",
        raft_index=copy.raft_index,
        epoch=copy.epoch,
        payload_sha256=sha256,
        payload_bytes=size,
        scheduler0_version="test",
        secret_key_check=key_check(secret_key),
        counts=copy.counts,
    )
    path = tmp_path / "b.s0backup"
    write_container(path, header, copy.path)
    return path, header


def restore(
    tmp_path: Path, *args: str, secret_key: str = SECRET_KEY, data_dir: Path | None = None
) -> Any:
    env = {
        "SCHEDULER0_SECRET_KEY": secret_key,
        "SCHEDULER0_DATA_DIR": str(data_dir or tmp_path / "new-node"),
    }
    return CliRunner().invoke(app, ["restore", *args], env=env)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yml or .scheduler0 from elsewhere
    for name in [n for n in os.environ if n.startswith("SCHEDULER0_")]:
        monkeypatch.delenv(name)


def test_the_copy_holds_the_state_at_the_index_it_reports(tmp_path: Path) -> None:
    path, header = make_backup(tmp_path)
    assert header.raft_index == 8 and header.epoch == 3
    assert header.counts == {
        "projects": 1,
        "credentials": 1,
        "jobs": 3,
        "executions": 2,
        "dispatched": 1,
    }
    assert read_header(path)[0] == header
    checked = restore(tmp_path, str(path), "--check")
    assert checked.exit_code == 0, checked.output
    assert "is a good backup" in checked.output and "raft index 8" in checked.output


def test_a_copy_under_concurrent_apply_is_at_exactly_one_index(tmp_path: Path) -> None:
    """Every command creates one project: a copy at index i holds i - 1 of them."""
    machine = StateMachine(tmp_path / "state.db")
    stop = threading.Event()

    def apply_forever() -> None:
        index = 1
        while not stop.is_set():
            index += 1
            command = c.ProjectCreated(
                now=NOW, name=f"p{index}", description="x" * 2000, signing_secret="s"
            )
            ok(machine, command, index)

    writer = threading.Thread(target=apply_forever)
    writer.start()
    try:
        while machine.applied_commands < 10:
            time.sleep(0.001)
        copies = [copy_replica(tmp_path / "state.db", tmp_path / f"c{i}.db") for i in range(20)]
    finally:
        stop.set()
        writer.join()
        machine.close()
    indexes = [copy.raft_index for copy in copies]
    assert indexes == sorted(indexes) and indexes[-1] > indexes[0]  # apply went on meanwhile
    for copy in copies:
        db = sqlite3.connect(copy.path)
        (projects,) = db.execute("SELECT COUNT(*) FROM projects").fetchone()
        (stored,) = db.execute("SELECT value FROM meta WHERE key = 'applied_index'").fetchone()
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
        db.close()
        assert projects == copy.counts["projects"] == int(stored) - 1 == copy.raft_index - 1
        assert mode == "delete"


def test_restore_seeds_the_raft_snapshot_of_a_new_node(tmp_path: Path) -> None:
    path, header = make_backup(tmp_path)
    data_dir = tmp_path / "new-node"
    result = restore(tmp_path, str(path))
    assert result.exit_code == 0, result.output
    assert "1 executions were in flight at backup time: recorded lost" in result.output
    assert sorted(os.listdir(data_dir)) == ["raft.snapshot"]

    # What the node will load at its first start: the state machine's own loader.
    machine = StateMachine(tmp_path / "loaded.db")
    marker = machine.load_snapshot(str(data_dir / "raft.snapshot"))
    assert marker == {"kind": "scheduler0-restore-seed", "raft_index": 8}
    assert machine.epoch == 3 and machine.owners == [2] * BUCKETS
    db = sqlite3.connect(tmp_path / "loaded.db")
    assert db.execute("SELECT id, last_fired_slot FROM jobs ORDER BY id").fetchall() == [
        (1, T0 + 5),
        (2, T0 + 5),
        (3, None),
    ]
    assert db.execute("SELECT signing_secret FROM projects").fetchall() == [("whsec_kept",)]
    assert db.execute("SELECT api_key, secret_hash FROM credentials").fetchall() == [
        ("s0k_k", hash_secret(SECRET_KEY, "s"))
    ]
    assert db.execute("SELECT job_id, state, updated_at, error FROM executions").fetchall() == [
        (1, "success", NOW + 6, None),
        (2, "lost", header.created_at, RESTORED_LOST_ERROR),
    ]
    assert db.execute("SELECT COUNT(*) FROM members").fetchone() == (0,)
    db.close()
    machine.close()


def test_restore_refuses_a_data_dir_that_holds_raft_state(tmp_path: Path) -> None:
    path, _ = make_backup(tmp_path)
    for name in ("raft.journal", "raft.journal.meta", "raft.snapshot"):
        data_dir = tmp_path / f"used-{name}"
        data_dir.mkdir()
        (data_dir / name).write_bytes(b"x")
        result = restore(tmp_path, str(path), data_dir=data_dir)
        assert result.exit_code == 2, result.output
        assert f"already holds raft state ({name})" in result.output
        assert sorted(os.listdir(data_dir)) == [name]


def test_restore_refuses_another_or_no_secret_key(tmp_path: Path) -> None:
    path, _ = make_backup(tmp_path)
    result = restore(tmp_path, str(path), secret_key="1" * 64)
    assert result.exit_code == 2, result.output
    assert "SecretKey is not the one of the cluster that made the backup" in result.output
    assert not (tmp_path / "new-node").exists()
    result = restore(tmp_path, str(path), secret_key="")
    assert result.exit_code == 2 and "no SecretKey" in result.output
    forced = restore(tmp_path, str(path), "--ignore-secret-key", secret_key="1" * 64)
    assert forced.exit_code == 0, forced.output


def rewrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("payload byte", "checksum mismatch: the database in the backup is damaged"),
        ("version", f"has backup format version 9; this scheduler0 reads version {FORMAT_VERSION}"),
        ("magic", "is not a scheduler0 backup"),
        ("truncated", "the backup is truncated"),
        ("header", "the backup's header is damaged"),
        ("empty", "is not a scheduler0 backup"),
    ],
)
def test_restore_refuses_a_damaged_or_unknown_file(
    tmp_path: Path, damage: str, message: str
) -> None:
    path, header = make_backup(tmp_path)
    size = path.stat().st_size
    if damage == "payload byte":
        rewrite(path, size - header.payload_bytes + 5000, b"\xff")
    elif damage == "version":
        rewrite(path, len(MAGIC), struct.pack(">H", 9))
    elif damage == "magic":
        rewrite(path, 0, b"SQLite f")
    elif damage == "truncated":
        os.truncate(path, size - 100)
    elif damage == "header":
        rewrite(path, len(MAGIC) + 6, b"[")
    else:
        path.write_bytes(b"")
    for args in ([str(path), "--check"], [str(path)]):
        result = restore(tmp_path, *args)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "new-node").exists()


def test_the_seed_marker_is_plain_data(tmp_path: Path) -> None:
    """The marker restore writes must be loadable without scheduler0 classes."""
    path, _ = make_backup(tmp_path)
    assert restore(tmp_path, str(path)).exit_code == 0
    db = sqlite3.connect(tmp_path / "new-node" / "raft.snapshot")
    (blob,) = db.execute("SELECT data FROM _raft").fetchone()
    db.close()
    assert pickle.loads(blob) == {"kind": "scheduler0-restore-seed", "raft_index": 8}
    assert b"scheduler0." not in blob


def test_restore_refuses_a_database_that_is_not_a_scheduler0_state(tmp_path: Path) -> None:
    """A well-formed container (magic, version, checksum) around a database
    with the right table names and other columns: refused with exit code 2
    naming why, no traceback, and no data dir left behind."""
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    for table in ("meta", "projects", "credentials", "jobs", "executions", "members"):
        conn.execute(f"CREATE TABLE {table} (x INTEGER)")
    conn.commit()
    conn.close()
    _, header = make_backup(tmp_path)
    sha256, size = file_sha256(foreign)
    fake = BackupHeader(**{**header.__dict__, "payload_sha256": sha256, "payload_bytes": size})
    path = tmp_path / "foreign.s0backup"
    write_container(path, fake, foreign)
    result = restore(tmp_path, str(path))
    assert result.exit_code == 2, result.output
    assert "is not a scheduler0 state" in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "new-node").exists()
