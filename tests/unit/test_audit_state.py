"""Audit fields and the audit log in the state machine, on real SQLite files:
who created, changed and deleted what is replicated state, made only of the
commands' stamped values, so every replica holds the same records."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.handlers.audit import DeletedObject, record_deletions
from scheduler0.daemon.state.machine import StateMachine

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def job(**extra: Any) -> dict[str, Any]:
    return {
        "project_id": 1,
        "spec": "0 0 1 1 *",
        "timezone": "UTC",
        "data": None,
        "callback_url": "http://127.0.0.1:9/cb",
        "execution_type": "http",
        "anchor": int(NOW),
        **extra,
    }


def apply(machine: StateMachine, command: c.Command) -> Any:
    result = machine.apply(c.encode(command))
    assert "ok" in result, result
    return result["ok"]


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


AUDIT = "SELECT id, at, action, kind, object_id, name, project_id, actor, detail FROM audit_log"


def history() -> list[c.Command]:
    """Creates, changes and deletes of each kind, by named people and callers."""
    return [
        c.ProjectCreated(
            now=NOW, name="billing", description="", signing_secret="s", created_by="ana"
        ),
        c.ProjectCreated(now=NOW, name="spare", description="", signing_secret="t"),
        c.JobsCreated(
            now=NOW + 1,
            jobs=[job(name="nightly"), job(created_by="deploy-bot"), job()],
            created_by="credential:4",
        ),
        c.JobUpdated(now=NOW + 2, job_id=1, changes={"spec": "0 3 * * *", "modified_by": "bo"}),
        c.JobPaused(now=NOW + 3, job_id=2, paused=True, modified_by="operator"),
        c.ProjectUpdated(now=NOW + 4, project_id=1, description="x", modified_by="cy"),
        c.CredentialCreated(
            now=NOW + 5, api_key="k1", secret_hash="h", description="ci", created_by="ops"
        ),
        c.CredentialArchived(now=NOW + 6, credential_id=1, modified_by="ops2"),
        c.JobDeleted(now=NOW + 7, job_id=1, deleted_by="dee"),
        c.CredentialDeleted(now=NOW + 8, credential_id=1, deleted_by="operator"),
        c.ProjectDeleted(now=NOW + 9, project_id=2, deleted_by="credential:4"),
    ]


def test_who_created_and_changed_each_object_is_replicated(tmp_path: Path) -> None:
    machine = StateMachine(tmp_path / "a.db")
    for command in history()[:8]:
        apply(machine, command)
    machine.close()
    db = tmp_path / "a.db"
    assert rows(db, "SELECT id, created_by, modified_by FROM projects ORDER BY id") == [
        (1, "ana", "cy"),
        (2, None, None),  # no created_by in the command: not known
    ]
    assert rows(db, "SELECT id, created_by, modified_by FROM jobs ORDER BY id") == [
        (1, "credential:4", "bo"),  # the batch's creator
        (2, "deploy-bot", "operator"),  # its own creator; paused by the operator
        (3, "credential:4", None),
    ]
    assert rows(db, "SELECT created_by, modified_by FROM credentials") == [("ops", "ops2")]


def test_a_change_without_modified_by_keeps_the_last_one(tmp_path: Path) -> None:
    """As every older entry: no ``modified_by``, nothing said about who."""
    machine = StateMachine(tmp_path / "a.db")
    for command in history()[:8]:
        apply(machine, command)
    apply(machine, c.JobUpdated(now=NOW + 10, job_id=1, changes={"data": '"y"'}))
    apply(machine, c.JobPaused(now=NOW + 11, job_id=2, paused=False))
    apply(machine, c.ProjectUpdated(now=NOW + 12, project_id=1, name="billing2"))
    apply(machine, c.CredentialArchived(now=NOW + 13, credential_id=1, archived=False))
    machine.close()
    db = tmp_path / "a.db"
    assert rows(db, "SELECT modified_by FROM jobs WHERE id IN (1, 2) ORDER BY id") == [
        ("bo",),
        ("operator",),
    ]
    assert rows(db, "SELECT modified_by FROM projects WHERE id = 1") == [("cy",)]
    assert rows(db, "SELECT modified_by FROM credentials") == [("ops2",)]


def test_each_delete_leaves_one_record_of_who_what_and_when(tmp_path: Path) -> None:
    machine = StateMachine(tmp_path / "a.db")
    for command in history():
        apply(machine, command)
    machine.close()
    assert rows(tmp_path / "a.db", AUDIT + " ORDER BY id") == [
        (
            1,
            NOW + 7,
            "deleted",
            "job",
            1,
            "nightly",
            1,
            "dee",
            '{"callback_url":"http://127.0.0.1:9/cb","spec":"0 3 * * *"}',
        ),
        (2, NOW + 8, "deleted", "credential", 1, "ci", None, "operator", '{"api_key":"k1"}'),
        (3, NOW + 9, "deleted", "project", 2, "spare", 2, "credential:4", None),
    ]


def test_every_replica_records_the_same_deletions_also_from_a_snapshot(tmp_path: Path) -> None:
    """The records are made of the commands' ``now`` and ``deleted_by`` and the
    rows in log order: a replica applying the log whole, and one restored from
    a snapshot taken halfway, hold the same records."""
    payloads = [c.encode(command) for command in history()]
    whole = StateMachine(tmp_path / "whole.db")
    for payload in payloads:
        assert "ok" in whole.apply(payload)
    whole.close()
    first = StateMachine(tmp_path / "first.db")
    for payload in payloads[:9]:  # after the job's delete
        first.apply(payload)
    first.save_snapshot(str(tmp_path / "snap"), ("raft", 9))
    first.close()
    second = StateMachine(tmp_path / "second.db")
    second.load_snapshot(str(tmp_path / "snap"))
    for payload in payloads[9:]:
        assert "ok" in second.apply(payload)
    second.close()
    expected = rows(tmp_path / "whole.db", AUDIT + " ORDER BY id")
    assert len(expected) == 3
    assert rows(tmp_path / "second.db", AUDIT + " ORDER BY id") == expected


def test_a_delete_without_deleted_by_records_nothing_as_older_entries_did(tmp_path: Path) -> None:
    machine = StateMachine(tmp_path / "a.db")
    apply(machine, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
    apply(machine, c.JobsCreated(now=NOW, jobs=[job()]))
    apply(machine, c.CredentialCreated(now=NOW, api_key="k", secret_hash="h"))
    apply(machine, c.JobDeleted(now=NOW + 1, job_id=1))
    apply(machine, c.CredentialDeleted(now=NOW + 1, credential_id=1))
    apply(machine, c.ProjectDeleted(now=NOW + 1, project_id=1))
    machine.close()
    assert rows(tmp_path / "a.db", "SELECT COUNT(*) FROM jobs") == [(0,)]
    assert rows(tmp_path / "a.db", AUDIT) == []


def test_a_refused_delete_records_nothing(tmp_path: Path) -> None:
    machine = StateMachine(tmp_path / "a.db")
    apply(machine, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
    apply(machine, c.JobsCreated(now=NOW, jobs=[job()]))
    refused = machine.apply(c.encode(c.ProjectDeleted(now=NOW, project_id=1, deleted_by="x")))
    assert refused["error"]["code"] == "conflict"  # it still has a job
    missing = machine.apply(c.encode(c.JobDeleted(now=NOW, job_id=99, deleted_by="x")))
    assert missing["error"]["code"] == "not_found"
    machine.close()
    assert rows(tmp_path / "a.db", AUDIT) == []


def prune(keep: int | None, before: float | None) -> c.ExecutionsPruned:
    return c.ExecutionsPruned(
        now=NOW + 100,
        keep_rows=1000,
        before=0.0,
        per_job=100,
        job_id_from=0,
        job_id_to=0,
        audit_keep_rows=keep,
        audit_before=before,
    )


def deleted_jobs(machine: StateMachine, count: int) -> None:
    """``count`` jobs, each deleted one second after the previous one."""
    apply(machine, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
    apply(machine, c.JobsCreated(now=NOW, jobs=[job() for _ in range(count)]))
    for job_id in range(1, count + 1):
        apply(machine, c.JobDeleted(now=NOW + job_id, job_id=job_id, deleted_by="x"))


def test_retention_keeps_the_newest_records_within_the_window(tmp_path: Path) -> None:
    machine = StateMachine(tmp_path / "a.db")
    deleted_jobs(machine, 10)
    assert apply(machine, prune(None, None)) == {"deleted": 0}  # as older entries: untouched
    assert rows(tmp_path / "a.db", "SELECT COUNT(*) FROM audit_log") == [(10,)]
    assert apply(machine, prune(6, None)) == {"deleted": 0, "audit_deleted": 4}
    assert rows(tmp_path / "a.db", "SELECT object_id FROM audit_log ORDER BY id") == [
        (n,) for n in range(5, 11)
    ]
    # Recorded before NOW + 8: jobs 5, 6 and 7.
    assert apply(machine, prune(6, NOW + 8)) == {"deleted": 0, "audit_deleted": 3}
    machine.close()
    assert rows(tmp_path / "a.db", "SELECT object_id, at FROM audit_log ORDER BY id") == [
        (8, NOW + 8),
        (9, NOW + 9),
        (10, NOW + 10),
    ]


def test_the_recording_function_serves_any_kind_of_delete(tmp_path: Path) -> None:
    """What an executor's delete (or a cascade) calls: one record per object,
    none without a ``deleted_by``."""
    conn = sqlite3.connect(tmp_path / "a.db")
    StateMachine(tmp_path / "a.db").close()  # the schema
    executors = [DeletedObject("executor", 3, "hooks", None, {"webhook_url": "http://h/"})]
    assert record_deletions(conn, NOW, None, executors) == 0
    assert record_deletions(conn, NOW, "ana", [*executors, DeletedObject("job", 4)]) == 2
    conn.commit()
    assert conn.execute(AUDIT + " ORDER BY id").fetchall() == [
        (1, NOW, "deleted", "executor", 3, "hooks", None, "ana", '{"webhook_url":"http://h/"}'),
        (2, NOW, "deleted", "job", 4, None, None, "ana", None),
    ]
    conn.close()


def test_a_project_deleting_much_pushes_its_own_records_out_not_another_projects(
    tmp_path: Path,
) -> None:
    """A fair cap (the leader proposes it so): project 2 deleting 8 jobs past
    a cap of 6 records drops its own oldest, and project 1's two records,
    older than all of them, stay. Without ``fair`` (older entries) the oldest
    records of any project went first."""
    for fair, expected in ((True, [1, 2, 7, 8, 9, 10]), (None, [5, 6, 7, 8, 9, 10])):
        path = tmp_path / f"{fair}.db"
        machine = StateMachine(path)
        apply(machine, c.ProjectCreated(now=NOW, name="a", description="", signing_secret="s"))
        apply(machine, c.ProjectCreated(now=NOW, name="b", description="", signing_secret="s"))
        apply(machine, c.JobsCreated(now=NOW, jobs=[job()] * 2 + [job(project_id=2)] * 8))
        for job_id in range(1, 11):
            apply(machine, c.JobDeleted(now=NOW + job_id, job_id=job_id, deleted_by="x"))
        pruned = apply(machine, replace(prune(6, None), fair=fair))
        assert pruned["audit_deleted"] == 4
        machine.close()
        assert [n for (n,) in rows(path, "SELECT object_id FROM audit_log ORDER BY id")] == expected
