"""``GET /jobs`` filters as ``Queries.jobs`` reads them: name, labels, text, paging."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state import schema
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.queries import JobSearch, Queries
from scheduler0.daemon.state.schema import SCHEMA

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def job(project_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "spec": "@every 1m",
        "timezone": "UTC",
        "data": None,
        "callback_url": "http://127.0.0.1:1/cb",
        "execution_type": "http",
        "anchor": int(NOW),
        **extra,
    }


@pytest.fixture
def queries(tmp_path: Path) -> Iterator[Queries]:
    machine = StateMachine(tmp_path / "state.db")
    for name in ("p", "q"):
        machine.apply(
            c.encode(c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))
        )
    jobs = [
        job(1, name="Nightly-Billing", labels={"team": "ops", "env": "prod"}),  # 1
        job(1, name="report", labels={"team": "ops", "env": "dev"}),  # 2
        job(2, name="report", labels={"team": "web", "env": "prod"}),  # 3
        job(1, spec="0 9 * * MON", callback_url="http://billing.example/hook"),  # 4
        job(2, callback_url="http://h.example/100%_done"),  # 5
        job(1, labels={"team": "ops"}),  # 6
    ]
    assert "ok" in machine.apply(c.encode(c.JobsCreated(now=NOW, jobs=jobs)))
    reader = Queries(tmp_path / "state.db")
    yield reader
    reader.db.close()
    machine.close()


def ids(queries: Queries, search: JobSearch, **kwargs: Any) -> list[int]:
    page = queries.jobs(
        kwargs.get("project_id"),
        kwargs.get("limit", 100),
        kwargs.get("offset", 0),
        kwargs.get("visible"),
        search,
    )
    return [row["id"] for row in page.rows]


def test_a_name_matches_exactly_in_every_project_or_one(queries: Queries) -> None:
    assert ids(queries, JobSearch(name="report")) == [2, 3]
    assert ids(queries, JobSearch(name="report"), project_id=2) == [3]
    assert ids(queries, JobSearch(name="Report")) == []
    assert ids(queries, JobSearch(name="repor")) == []


def test_every_label_must_match(queries: Queries) -> None:
    assert ids(queries, JobSearch(labels=(("team", "ops"),))) == [1, 2, 6]
    assert ids(queries, JobSearch(labels=(("team", "ops"), ("env", "prod")))) == [1]
    assert ids(queries, JobSearch(labels=(("env", "prod"),)), visible=frozenset({2})) == [3]
    assert ids(queries, JobSearch(labels=(("team", "ops"), ("env", "qa")))) == []


def test_q_is_a_substring_of_name_url_or_spec_ignoring_case(queries: Queries) -> None:
    assert ids(queries, JobSearch(q="BILLING")) == [1, 4]  # a name, a callback URL
    assert ids(queries, JobSearch(q="mon")) == [4]  # the spec
    # LIKE's wildcards are plain characters in q.
    assert ids(queries, JobSearch(q="100%_")) == [5]
    assert ids(queries, JobSearch(q="%")) == [5]
    assert ids(queries, JobSearch(q="_")) == [5]
    assert ids(queries, JobSearch(q="billing", labels=(("env", "prod"),))) == [1]


def test_a_filtered_list_pages_with_its_own_total(queries: Queries) -> None:
    search = JobSearch(labels=(("team", "ops"),))
    first = queries.jobs(None, 2, 0, None, search)
    second = queries.jobs(None, 2, 2, None, search)
    assert (first.total, [r["id"] for r in first.rows]) == (3, [1, 2])
    assert (second.total, [r["id"] for r in second.rows]) == (3, [6])
    assert queries.jobs(None, 100, 0, None, None).total == 6


def test_a_database_of_an_older_node_gets_the_new_columns_tables_and_indexes(
    tmp_path: Path,
) -> None:
    """A snapshot written before names, labels and triggers loads: the added
    columns are NULL (no name, no labels, a run of the schedule) and the label
    table and the name index are made, and the index of every execution by
    state gives way to the one of those not succeeded."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.executescript(
        "DROP TABLE job_labels;"  # SCHEMA has neither the added columns nor their index
        " DROP INDEX executions_by_second; CREATE INDEX executions_by_slot ON executions(slot);"
        " DROP INDEX executions_not_succeeded;"
        " CREATE INDEX executions_by_state ON executions(state, id);"
        " INSERT INTO projects VALUES (1, 'p', '', 's', 0, 0);"
        " INSERT INTO jobs (id, project_id, bucket, spec, timezone, callback_url, anchor,"
        " not_before, created_at, updated_at) VALUES (1, 1, 0, '@hourly', 'UTC', 'http://h/',"
        " 0, 0, 0, 0);"
        " INSERT INTO executions (job_id, project_id, slot, state, created_at, updated_at)"
        " VALUES (1, 1, 3600, 'success', 0, 0);"
    )
    old.close()
    conn = schema.connect(path, writer=True)
    conn.row_factory = None
    assert conn.execute("SELECT name, labels FROM jobs").fetchall() == [(None, None)]
    assert conn.execute("SELECT trigger FROM executions").fetchall() == [(None,)]
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(jobs)")}
    assert "jobs_by_name" in indexes
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(executions)")}
    assert {"executions_by_second", "executions_by_trigger"} <= indexes
    assert "executions_by_slot" not in indexes  # replaced, not kept beside it
    assert "executions_not_succeeded" in indexes
    assert "executions_by_state" not in indexes
    assert conn.execute("SELECT COUNT(*) FROM job_labels").fetchone() == (0,)
    schema.add_missing_columns(conn)  # idempotent
    conn.close()
