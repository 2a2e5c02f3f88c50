"""The API's JSON shapes are the wire models' fields, exactly: what the server
builds in ``api/views.py`` is what the client side validates with
``scheduler0.models``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from scheduler0.daemon.api import views
from scheduler0.daemon.state.schema import manual_slot
from scheduler0.models import (
    AuditRecordOut,
    CredentialOut,
    ExecutionOut,
    ExecutorOut,
    JobOut,
    ProjectOut,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.5
JOB = {
    "project_id": 3,
    "spec": "*/5 * * * *",
    "timezone": "Europe/Paris",
    "data": '{"a": 1}',
    "callback_url": "http://127.0.0.1:3000/cb",
    "execution_type": "http",
    "anchor": 1_800_000_000,
}
PROJECT = {
    "id": 1,
    "name": "p",
    "description": "",
    "signing_secret": "s",
    "created_at": NOW,
    "updated_at": NOW,
    "created_by": "ana",
    "modified_by": None,
}
CREDENTIAL = {
    "id": 2,
    "api_key": "k",
    "description": "",
    "archived": 0,
    "created_at": NOW,
    "updated_at": NOW,
    "scopes": None,
    "projects": None,
    "expires_at": None,
    "created_by": None,
    "modified_by": "credential:4",
}
EXECUTION = {
    "id": 9,
    "job_id": 7,
    "project_id": 3,
    "slot": 1_800_000_100,
    "trigger": None,
    "state": "success",
    "node_id": 1,
    "epoch": 2,
    "attempts": 1,
    "status_code": 200,
    "latency_ms": 12,
    "error": None,
    "created_at": NOW,
    "updated_at": NOW,
}


def same_fields(model: type[BaseModel], shown: dict[str, Any], optional: set[str]) -> None:
    assert set(shown) <= set(model.model_fields), set(shown) - set(model.model_fields)
    assert set(model.model_fields) - set(shown) <= optional
    assert model.model_validate(shown).model_dump(include=set(shown), mode="json") == shown


def test_a_job_is_shown_with_the_fields_of_job_out() -> None:
    shown = views.job_out(views.new_job_row(7, JOB, NOW))
    same_fields(JobOut, shown, optional=set())
    assert shown["data"] == {"a": 1} and shown["next_run_at"] is not None


def test_a_project_is_shown_with_the_fields_of_project_out() -> None:
    same_fields(ProjectOut, views.project_out(PROJECT), optional=set())
    same_fields(ProjectOut, views.project_out(PROJECT, False), optional={"signing_secret"})


def test_a_credential_is_shown_with_the_fields_of_credential_out() -> None:
    same_fields(CredentialOut, views.credential_out(CREDENTIAL), optional={"api_secret"})


def test_a_new_job_shows_the_batch_creator_unless_it_names_its_own() -> None:
    assert views.job_out(views.new_job_row(7, JOB, NOW, "credential:3"))["created_by"] == (
        "credential:3"
    )
    own = views.job_out(views.new_job_row(7, {**JOB, "created_by": "ana"}, NOW, "credential:3"))
    assert own["created_by"] == "ana" and own["modified_by"] is None


def test_an_audit_record_is_shown_with_the_fields_of_audit_record_out() -> None:
    row = {
        "id": 5,
        "at": NOW,
        "action": "deleted",
        "kind": "job",
        "object_id": 7,
        "name": "nightly",
        "project_id": 3,
        "actor": "ana",
        "detail": '{"callback_url": "http://127.0.0.1:3000/cb", "spec": "* * * * *"}',
        "principal": "credential:4",
    }
    shown = views.audit_record_out(row)
    same_fields(AuditRecordOut, shown, optional=set())
    assert shown["by"] == "ana" and shown["at"] == "2027-01-15T08:00:00.500000Z"
    assert shown["principal"] == "credential:4"
    assert shown["detail"] == {"callback_url": "http://127.0.0.1:3000/cb", "spec": "* * * * *"}


def test_an_execution_is_shown_with_the_fields_of_execution_out() -> None:
    shown = views.execution_out(EXECUTION)
    same_fields(ExecutionOut, shown, optional=set())
    assert shown["execution_id"] == "7-1800000100"
    assert shown["trigger"] == "schedule"  # NULL: a run of the schedule, or an older row


def test_a_manual_run_is_shown_with_its_own_id_its_second_and_its_trigger() -> None:
    key = manual_slot(1_800_000_100, 2)
    shown = views.execution_out({**EXECUTION, "slot": key, "trigger": "manual"})
    same_fields(ExecutionOut, shown, optional=set())
    assert (shown["execution_id"], shown["slot"], shown["trigger"]) == (
        "7-1800000100-m2",
        1_800_000_100,
        "manual",
    )
    assert shown["scheduled_at"] == views.execution_out(EXECUTION)["scheduled_at"]


def test_an_executor_is_shown_with_the_fields_of_executor_out_and_never_its_secret() -> None:
    row = {
        "id": 4,
        "name": "billing",
        "type": "webhook_url",
        "webhook_url": "http://127.0.0.1:3000/hooks",
        "webhook_method": "PUT",
        "webhook_secret": "exec-secret",
        "created_by": "ops",
        "modified_by": None,
        "created_at": NOW,
        "updated_at": NOW,
        "jobs": 2,
    }
    shown = views.executor_out(row)
    same_fields(ExecutorOut, shown, optional=set())
    assert "exec-secret" not in repr(shown)
    assert shown["has_webhook_secret"] is True
    assert views.executor_out({**row, "webhook_secret": None})["has_webhook_secret"] is False


def test_a_job_for_the_wire_encodes_as_the_job_shown() -> None:
    """``job_wire`` embeds the stored ``data`` text instead of decoding it: the
    JSON it encodes to says exactly what ``job_out``'s does."""
    import orjson

    for data in ('{"a": 1, "b": [1, 2.5, "x"]}', '"text"', "null", None, '{"k": "é\\u2028"}'):
        row = views.new_job_row(7, {**JOB, "data": data}, NOW)
        wire = orjson.loads(orjson.dumps(views.job_wire(row)))
        assert wire == orjson.loads(orjson.dumps(views.job_out(row)))
        assert wire["data"] == (None if data is None else orjson.loads(data))


def test_a_page_of_jobs_is_the_jobs_shown_one_by_one(tmp_path: Any) -> None:
    """``job_page`` (columns by position) encodes each job exactly as
    ``job_out`` shows it, for common and uncommon rows alike."""
    import sqlite3

    import orjson

    from scheduler0.daemon.state.schema import NO_NEXT_RUN, connect

    db = connect(tmp_path / "state.db", writer=True)
    columns = [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
    variants = [
        {},
        {"paused": 1},
        {"next_run": None},
        {"next_run": NO_NEXT_RUN, "spec": "@at 2026-01-01T00:00:00Z"},
        {"labels": '{"team": "a"}', "name": "n", "last_fired_slot": 1_800_000_060},
        {"policy": '{"overlap": "skip", "retry": {"attempts": 3}}', "data": None},
        {"created_at": 1_800_000_000, "updated_at": 1_800_000_001.25, "executor_id": 4},
    ]
    for n, change in enumerate(variants, start=1):
        row = views.new_job_row(n, {**JOB, "next_run": 1_800_000_300}, NOW)
        row.update(bucket=n, consecutive_failures=0, **change)
        values = [row.get(c) for c in columns]
        db.execute(f"INSERT INTO jobs VALUES ({','.join('?' * len(columns))})", values)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
    paged = orjson.loads(orjson.dumps(views.job_page(rows)))
    one_by_one = [orjson.loads(orjson.dumps(views.job_out(r))) for r in rows]
    assert paged == one_by_one
    assert orjson.dumps(views.job_page([])) == b"[]"


def test_a_created_batch_is_shown_as_its_jobs_one_by_one() -> None:
    """``created_jobs`` (what a batch shares presented once) shows each job
    exactly as ``job_wire`` shows the row ``JobsCreated`` writes for it."""
    import orjson

    from scheduler0.daemon.state.schema import NO_NEXT_RUN

    variants: list[dict[str, Any]] = [
        {},
        {"paused": True},
        {"next_run": None},
        {"next_run": NO_NEXT_RUN, "spec": "@at 2026-01-01T00:00:00Z"},
        {"labels": {"team": "a"}, "name": "n", "created_by": "ana"},
        {"policy": {"overlap": "skip", "retry": {"attempts": 3}}, "data": None},
        {"policy": {"overlap": None}, "executor_id": 4, "callback_url": ""},
        {"policy": {"start_at": 1_800_000_000.25, "max_runs": 2}},
    ]
    jobs = [{**JOB, "next_run": 1_800_000_300, **change} for change in variants]
    for who in (None, "credential:3"):
        shown = orjson.loads(orjson.dumps(views.created_jobs(7, jobs, NOW, who)))
        one_by_one = [
            orjson.loads(orjson.dumps(views.job_wire(views.new_job_row(7 + n, job, NOW, who))))
            for n, job in enumerate(jobs)
        ]
        assert shown == one_by_one
