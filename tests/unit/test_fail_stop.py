"""Fail-stop, never diverge: an apply that fails because of this node's own
environment halts the replica (the entry is neither applied nor skipped), a
domain error stays a value, and replicas that applied the same log publish the
same state digest, also across a snapshot."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

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

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def project(name: str) -> bytes:
    return c.encode(c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))


def disk_full() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL, as sqlite3 sets it
    return exc


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
