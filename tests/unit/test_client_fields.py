"""The official clients' job fields as the models read them into ours, a
created job's ``paused``, and the list orders: the whitelist, the query
parameters and the indexes a deep page walks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.requests import Request

from scheduler0.daemon.api.http import (
    EXECUTIONS_ORDER,
    JOBS_ORDER,
    ORDER_BY_DIRECTION,
    ORDER_DIRECTION,
    Declared,
    order_param,
)
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.queries import ORDERS, Order, Queries, order_by
from scheduler0.errors import ValidationFailed
from scheduler0.models import JobIn, JobPatch, offset_readings, parse_one

pytestmark = pytest.mark.unit

BASE = {"projectId": 1, "spec": "0 9 * * *", "callbackUrl": "http://x.test/hook"}


def unix(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def refused(model: type[Any], body: dict[str, Any], **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_one(model, body, **kwargs)
    return [(d.field, d.message) for d in caught.value.details]


# -- job fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "timezone", "start_at"),
    [
        ("2031-01-06T09:00:00Z", "Europe/Berlin", "2031-01-06T09:00:00"),
        ("2031-01-06T09:00:00+02:00", "UTC", "2031-01-06T07:00:00"),
        ("2031-01-06T09:00:00", "Europe/Berlin", "2031-01-06T08:00:00"),
        ("2031-07-06 09:00", "Europe/Berlin", "2031-07-06T07:00:00"),
        ("2031-01-06", "America/New_York", "2031-01-06T05:00:00"),
        ("2031-01-06T09:00:00", "UTC", "2031-01-06T09:00:00"),
        # 02:30 on 2031-10-26 happens twice in Berlin: the first one (summer time).
        ("2031-10-26T02:30:00", "Europe/Berlin", "2031-10-26T00:30:00"),
    ],
)
def test_start_date_is_read_into_start_at(given: str, timezone: str, start_at: str) -> None:
    job = parse_one(JobIn, {**BASE, "timezone": timezone, "startDate": given})
    assert job.policy() == {"start_at": unix(start_at)}
    assert job.start_date is None  # read into start_at, not kept beside it


def test_end_date_in_snake_case_and_an_equal_start_at_are_accepted() -> None:
    job = parse_one(
        JobIn,
        {
            **BASE,
            "start_date": "2031-01-01T00:00:00Z",
            "start_at": "2031-01-01T01:00:00+01:00",
            "end_date": "2031-02-01",
        },
    )
    assert job.policy() == {
        "start_at": unix("2031-01-01T00:00:00"),
        "end_at": unix("2031-02-01T00:00:00"),
    }


def test_a_date_without_offset_in_a_patch_is_read_in_the_jobs_timezone() -> None:
    patch = parse_one(JobPatch, {"endDate": "2031-01-06"}, context={"timezone": "Asia/Tokyo"})
    assert patch.policy_changes() == {"end_at": unix("2031-01-05T15:00:00")}
    own = parse_one(
        JobPatch,
        {"endDate": "2031-01-06", "timezone": "UTC"},
        context={"timezone": "Asia/Tokyo"},
    )
    assert own.policy_changes() == {"end_at": unix("2031-01-06T00:00:00")}
    reset = parse_one(JobPatch, {"startDate": None})
    assert reset.policy_changes() == {"start_at": None}


def test_retry_max_sets_retry_attempts_and_keeps_the_other_retry_fields() -> None:
    job = parse_one(JobIn, {**BASE, "retryMax": 3, "retry": {"initialSeconds": 2.0}})
    assert job.policy() == {"retry": {"attempts": 3, "initial_seconds": 2.0}}
    same = parse_one(JobIn, {**BASE, "retry_max": 3, "retry": {"attempts": 3}})
    assert same.policy() == {"retry": {"attempts": 3}}
    patch = parse_one(JobPatch, {"retryMax": 0})
    assert patch.policy_changes({"attempts": 5, "cap_seconds": 9.0}) == {
        "retry": {"attempts": 0, "cap_seconds": 9.0}
    }


def test_status_creates_the_job_paused_or_not() -> None:
    assert parse_one(JobIn, {**BASE, "status": "inactive"}).paused is True
    assert parse_one(JobIn, {**BASE, "status": "active"}).paused is False
    assert parse_one(JobIn, BASE).paused is False
    assert refused(JobIn, {**BASE, "status": "paused"}) == [
        ("status", "Input should be 'active' or 'inactive'")
    ]
    assert [f for f, _ in refused(JobPatch, {"status": None})] == ["status"]


def test_a_timezone_offset_is_accepted_in_any_of_its_readings_at_now_or_the_start() -> None:
    assert offset_readings(60) == (60, 3600, -3600)
    body = {**BASE, "timezone": "Asia/Kolkata"}  # +05:30 all year
    for offset in (19800, 330, -330):
        assert parse_one(JobIn, {**body, "timezoneOffset": offset}).policy() is None
    # New York: -05:00 in January, -04:00 in July: the offset at the start
    # is accepted whatever today's is; no reading of -03:00 is New York's.
    ny = {**BASE, "timezone": "America/New_York"}
    for start, hours in (("2031-01-06T09:00:00", -5), ("2031-07-06T09:00:00", -4)):
        parse_one(JobIn, {**ny, "startDate": start, "timezoneOffset": hours * 3600})
        details = refused(JobIn, {**ny, "startDate": start, "timezoneOffset": -3 * 3600})
        assert [field for field, _ in details] == ["timezone_offset"]
    # An unknown zone is named by the schedule's check, not by the offset.
    assert parse_one(JobIn, {**BASE, "timezone": "Mars/Olympus", "timezoneOffset": 7})


def test_a_contradicting_timezone_offset_is_refused_with_the_zones_offset() -> None:
    details = refused(JobIn, {**BASE, "timezone": "Asia/Kolkata", "timezoneOffset": 3600})
    assert details == [
        (
            "timezone_offset",
            "3600 contradicts timezone 'Asia/Kolkata', whose UTC offset is +05:30 (19800"
            " seconds east of UTC); the timezone decides when the job runs: send its offset"
            " or leave timezone_offset out",
        )
    ]
    assert [f for f, _ in refused(JobIn, {**BASE, "timezoneOffset": 1.5})] == ["timezone_offset"]


@pytest.mark.parametrize(
    ("fields", "name", "message"),
    [
        ({"startDate": 1893456000}, "start_date", "must be a time string"),
        ({"startDate": "2031-13-01"}, "start_date", "is not a valid time"),
        ({"endDate": "soon"}, "end_date", "must be RFC 3339"),
        (
            {"endDate": "2031-01-01", "endAt": "2031-01-02T00:00:00Z"},
            "end_date",
            "disagrees with end_at; send one of them",
        ),
        (
            {"startDate": "2031-01-02", "endDate": "2031-01-02"},
            "end_date",
            "must be later than start_date",
        ),
        (
            {"retryMax": 2, "retry": {"attempts": 3}},
            "retry_max",
            "disagrees with retry.attempts (3); send one of them",
        ),
        ({"retryMax": -1}, "retry_max", "Input should be greater than or equal to 0"),
        (
            {"startDate": "2031-01-01", "start_date": "2031-01-01"},
            "start_date",
            "given twice, as start_date and startDate",
        ),
        (
            {"startDate": "2031-01-01", "timezone": "Nowhere/Else"},
            "start_date",
            "has no offset, and the job's timezone 'Nowhere/Else' is not a known zone",
        ),
    ],
)
def test_bad_client_fields_are_refused_naming_the_field(
    fields: dict[str, Any], name: str, message: str
) -> None:
    details = refused(JobIn, {**BASE, **fields})
    assert [field for field, _ in details] == [name]
    assert message in details[0][1]


def test_a_created_job_is_paused_only_when_its_command_says_so(tmp_path: Path) -> None:
    machine = StateMachine(tmp_path / "state.db")
    try:
        machine.apply(
            c.encode(c.ProjectCreated(now=1.0, name="p", description="", signing_secret="s"))
        )
        job = {
            "project_id": 1,
            "spec": "@every 1m",
            "timezone": "UTC",
            "data": None,
            "callback_url": "http://127.0.0.1:1/",
            "execution_type": "http",
            "anchor": 1,
        }
        # An entry without ``paused`` (every older one) creates an active job.
        jobs = [job, {**job, "paused": True}, {**job, "paused": False}]
        assert "ok" in machine.apply(c.encode(c.JobsCreated(now=1.0, jobs=jobs)))
        reader = Queries(tmp_path / "state.db")
        assert [row["paused"] for row in reader.jobs_between(1, 3)] == [0, 1, 0]
        reader.db.close()
    finally:
        machine.close()


# -- list orders --------------------------------------------------------------------------


def test_every_order_is_made_of_the_whitelist_and_ends_with_the_id() -> None:
    assert order_by("jobs", None) == "ORDER BY id ASC"
    assert order_by("executions", None).startswith("ORDER BY (CASE WHEN slot < 0")
    assert order_by("executions", None).endswith(" DESC, id DESC")
    assert order_by("jobs", Order("name", True)) == "ORDER BY name DESC, id DESC"
    assert order_by("projects", Order("created_at")) == "ORDER BY id ASC"
    assert order_by("credentials", Order(None, True)) == "ORDER BY id DESC"
    assert order_by("executions", Order("id")) == "ORDER BY id DESC"  # newest first
    for table, columns in ORDERS.items():
        for column, expression in columns.items():
            shown = order_by(table, Order(column, descending=False))
            assert shown.startswith(f"ORDER BY {expression} ASC")
    with pytest.raises(KeyError):
        order_by("jobs", Order("callback_url"))


def request(query: dict[str, str], *params: Any) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/api/v1/x",
            "headers": [],
            "query_string": urlencode(query).encode(),
            Declared.SCOPE_KEY: Declared(tuple(params), False),
        }
    )


def test_order_parameters_read_both_spellings_and_the_clients_column_names() -> None:
    params = (JOBS_ORDER, ORDER_BY_DIRECTION)
    assert order_param(request({}, *params), *params) == Order(None, None)
    given = request({"orderBy": "dateModified", "orderByDirection": "DESC"}, *params)
    assert order_param(given, *params) == Order("updated_at", True)
    given = request({"order_by": "name", "order_by_direction": "asc"}, *params)
    assert order_param(given, *params) == Order("name", False)
    executions = (EXECUTIONS_ORDER, ORDER_BY_DIRECTION, ORDER_DIRECTION)
    given = request({"orderBy": "nextExecutionDateTime", "orderDirection": "ASC"}, *executions)
    assert order_param(given, *executions) == Order("scheduled_at", False)


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            {"orderBy": "secret"},
            "orderBy",
            "must be one of id, name, project_id, created_at, updated_at",
        ),
        ({"order_by": "name DESC"}, "order_by", "must be one of"),
        ({"orderBy": "name", "order_by": "id"}, "order_by", "orderBy and order_by disagree"),
        ({"orderByDirection": "up"}, "orderByDirection", "must be asc or desc"),
        ({"order_by_direction": "Desc"}, "order_by_direction", "must be asc or desc"),
    ],
)
def test_an_order_outside_the_whitelist_is_a_422_naming_the_parameter(
    query: dict[str, str], field: str, message: str
) -> None:
    params = (JOBS_ORDER, ORDER_BY_DIRECTION)
    with pytest.raises(ValidationFailed) as caught:
        order_param(request(query, *params), *params)
    assert [d.field for d in caught.value.details] == [field]
    assert message in caught.value.details[0].message


@pytest.fixture
def queries(tmp_path: Path) -> Iterator[Queries]:
    machine = StateMachine(tmp_path / "state.db")
    reader = Queries(tmp_path / "state.db")
    yield reader
    reader.db.close()
    machine.close()


@pytest.mark.parametrize(
    ("table", "column"),
    [(table, column) for table in ("jobs", "executions") for column in ORDERS[table]],
)
def test_a_large_list_is_ordered_through_an_index_not_a_sort(
    queries: Queries, table: str, column: str
) -> None:
    for descending in (False, True):
        sql = f"SELECT * FROM {table} {order_by(table, Order(column, descending))} LIMIT 1 OFFSET 9"
        plan = " | ".join(row[3] for row in queries.db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "TEMP B-TREE" not in plan, plan
