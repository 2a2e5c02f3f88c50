"""Fail-stop, never diverge: an apply that fails because of this node's own
environment halts the replica (the entry is neither applied nor skipped), a
domain error stays a value, and replicas that applied the same log publish the
same state digest, also across a snapshot."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from scheduler0.daemon.api.cluster import digest_matches
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import HANDLERS, ApplyContext
from scheduler0.daemon.state.machine import (
    DIGEST_EVERY,
    ApplyHalted,
    StateMachine,
    environment_failure,
)
from scheduler0.daemon.state.schema import BUCKETS, sqlite_too_old

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def project(name: str) -> bytes:
    return c.encode(c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))


def sqlite_error(kind: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    exc = kind(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]  # as sqlite3 sets it
    return exc


def disk_full() -> sqlite3.Error:
    return sqlite_error(sqlite3.OperationalError, "database or disk is full", 13)  # SQLITE_FULL


def names(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [n for (n,) in conn.execute("SELECT name FROM projects ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("exc", "environment"),
    [
        (disk_full(), True),
        (OSError(28, "No space left on device"), True),
        (MemoryError(), True),
        (sqlite_error(sqlite3.OperationalError, "database is locked", 5), True),
        (sqlite_error(sqlite3.OperationalError, "database table is locked", 6), True),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
        (KeyError("project_id"), False),
        (ValueError("bad"), False),
    ],
)
def test_environment_failures_are_told_from_command_failures(
    exc: BaseException, environment: bool
) -> None:
    assert environment_failure(exc) is environment


def test_a_full_disk_halts_the_replica_without_applying_or_skipping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = StateMachine(tmp_path / "a.db")
    assert machine.apply(project("before")) == {"ok": {"id": 1}}
    before = machine.digest()

    def write_then_fail(ctx: ApplyContext, cmd: Any) -> None:
        ctx.db.execute(
            "INSERT INTO projects (name, description, signing_secret, created_at,"
            " updated_at) VALUES ('half', '', 's', 0, 0)"
        )
        raise disk_full()

    monkeypatch.setitem(HANDLERS, c.ProjectCreated, write_then_fail)
    with pytest.raises(ApplyHalted, match="disk is full"):
        machine.apply(project("lost"))
    assert machine.halted is not None and "disk is full" in machine.halted
    monkeypatch.undo()
    # Halted for good: the same entry (as the log retries it) and any later one raise.
    with pytest.raises(ApplyHalted):
        machine.apply(project("lost"))
    with pytest.raises(ApplyHalted):
        machine.apply(project("later"))
    assert names(tmp_path / "a.db") == ["before"]  # rolled back, nothing skipped ahead
    assert machine.digest() == before
    machine.close()


def test_a_domain_error_or_a_bug_stays_a_value_and_does_not_halt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = StateMachine(tmp_path / "a.db")
    machine.apply(project("a"))
    assert machine.apply(project("a"))["error"]["code"] == "conflict"

    def buggy(ctx: ApplyContext, cmd: Any) -> None:
        raise KeyError("oops")

    monkeypatch.setitem(HANDLERS, c.Noop, buggy)
    assert "oops" in machine.apply(c.encode(c.Noop(now=NOW)))["error"]["message"]
    assert machine.halted is None
    machine.close()


def test_replicas_of_one_log_have_one_digest_also_across_a_snapshot(tmp_path: Path) -> None:
    log = [project(f"p{i}") for i in range(DIGEST_EVERY + 5)] + [project("p0")]  # a conflict
    first, second = StateMachine(tmp_path / "a.db"), StateMachine(tmp_path / "b.db")
    for payload in log[:40]:
        first.apply(payload)
        second.apply(payload)
    # The second replica restarts from a snapshot taken here, as pysyncobj would.
    second.save_snapshot(str(tmp_path / "snap.db"), {"raft": "data"})
    second.close()
    restored = StateMachine(tmp_path / "c.db")
    assert restored.load_snapshot(str(tmp_path / "snap.db")) == {"raft": "data"}
    for payload in log[40:]:
        first.apply(payload)
        restored.apply(payload)
    assert first.digest() == restored.digest()
    assert first.digest()["index"] == len(log)
    assert first.digest()["checkpoint_index"] == DIGEST_EVERY
    # One different outcome and the digests part.
    first.apply(project("only-here"))
    restored.apply(project("elsewhere"))
    assert first.digest()["index"] == restored.digest()["index"]
    assert first.digest()["digest"] != restored.digest()["digest"]
    first.close()
    restored.close()


def test_digests_are_compared_at_one_index() -> None:
    leader = {"index": 70, "digest": "a", "checkpoint_index": 64, "checkpoint_digest": "c"}
    assert digest_matches(dict(leader), leader) is True
    assert digest_matches({**leader, "digest": "b"}, leader) is False
    assert digest_matches({**leader, "index": 68, "digest": "x"}, leader) is True  # checkpoint
    assert digest_matches({**leader, "index": 68, "checkpoint_digest": "d"}, leader) is False
    assert digest_matches({"index": 10, "checkpoint_index": 0}, leader) is None
    assert digest_matches(None, leader) is None


def entry(version: object, type_name: object, arguments: object) -> bytes:
    return b"j" + orjson.dumps({"v": version, "t": type_name, "a": arguments})


PROJECT_FIELDS = {"now": NOW, "name": "p", "description": "", "signing_secret": "s"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (entry(c.VERSION + 1, "ProjectCreated", PROJECT_FIELDS), "version"),
        (entry(c.VERSION, "ProjectTeleported", PROJECT_FIELDS), "unknown command type"),
        (entry(c.VERSION, "ProjectCreated", {**PROJECT_FIELDS, "colour": "red"}), "colour"),
    ],
    ids=["newer version", "unknown type", "unknown field"],
)
def test_an_entry_this_code_cannot_read_as_written_halts_the_replica(
    tmp_path: Path, payload: bytes, reason: str
) -> None:
    """Skipping it would leave this replica behind the ones that applied it
    (an old node left running beside upgraded ones): it halts instead."""
    machine = StateMachine(tmp_path / "a.db")
    assert machine.apply(project("before")) == {"ok": {"id": 1}}
    applied = machine.applied_commands
    with pytest.raises(ApplyHalted, match=reason):
        machine.apply(payload)
    assert machine.halted is not None and reason in machine.halted
    assert machine.applied_commands == applied
    with pytest.raises(ApplyHalted):
        machine.apply(project("later"))
    assert names(tmp_path / "a.db") == ["before"]
    machine.close()


@pytest.mark.parametrize(
    "payload",
    [
        b"x{}",
        b"j{not json",
        b"z" + b"not zlib",
        entry(c.VERSION, "ProjectCreated", [1]),
        entry([c.VERSION], "ProjectCreated", PROJECT_FIELDS),
    ],
    ids=["framing", "json", "zlib", "arguments", "version"],
)
def test_bytes_that_are_no_command_are_skipped_alike_on_every_replica(
    tmp_path: Path, payload: bytes
) -> None:
    """Every replica reads the same bytes the same way: each skips them."""
    machine = StateMachine(tmp_path / "a.db")
    outcome = machine.apply(payload)
    assert "undecodable command" in outcome["error"]["message"]
    assert machine.halted is None
    assert machine.apply(project("after")) == {"ok": {"id": 1}}
    machine.close()


def test_a_database_another_process_holds_halts_the_replica_rather_than_refusing(
    tmp_path: Path,
) -> None:
    """An operator's shell holding a write lock on the state database is this
    node's environment: refusing the command would make this replica alone
    differ from the others."""
    machine = StateMachine(tmp_path / "a.db")
    machine.apply(project("before"))
    machine._conn.execute("PRAGMA busy_timeout = 50")  # not 30 s of waiting in a unit test
    holder = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(ApplyHalted, match="locked"):
            machine.apply(project("while held"))
    finally:
        holder.close()
    assert names(tmp_path / "a.db") == ["before"]
    machine.close()


def test_an_assignment_that_rolls_back_leaves_the_owners_the_replica_stored(
    tmp_path: Path,
) -> None:
    """``AssignmentChanged`` sets the owners before its commit; when the entry
    then fails (here the write of the applied index), the replica judges the
    next fires by the owners it stored, as every other replica does."""
    machine = StateMachine(tmp_path / "a.db")
    machine.apply(c.encode(c.AssignmentChanged(now=NOW, epoch=1, owners=[1] * BUCKETS)), 1)
    machine._conn.execute(
        "CREATE TRIGGER fail_index BEFORE INSERT ON meta WHEN NEW.key = 'applied_index'"
        " BEGIN SELECT RAISE(ABORT, 'index not written'); END"
    )
    moved = c.encode(c.AssignmentChanged(now=NOW, epoch=2, owners=[2] * BUCKETS))
    assert "index not written" in machine.apply(moved, 2)["error"]["message"]
    assert (machine.assignment.epoch, set(machine.assignment.owners)) == (1, {1})
    machine.close()


def test_a_node_refuses_to_start_on_an_sqlite_too_old_for_its_state_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sqlite_too_old() is None  # this machine's
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 37, 2))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.37.2")
    reason = sqlite_too_old()
    assert reason is not None and "3.37.2" in reason and "3.38.0" in reason
