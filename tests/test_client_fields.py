"""The official clients' job fields and list parameters on a real node:
``startDate``/``endDate``/``retryMax``/``status``/``timezoneOffset`` in job
bodies, ``orderBy``/``orderByDirection`` on every list, the executions list's
``startDate``/``endDate``/``orderDirection``, JSON bodies on DELETE and the
``X-Account-ID`` header."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler0.daemon.state.queries import ORDERS
from tests.support.nodes import Client, NodeProcess, operator_headers

pytestmark = pytest.mark.integration

CALLBACK = "http://127.0.0.1:9/callback"  # never called: these jobs are paused or far off


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def refusal(client: Client, method: str, path: str, **kwargs: Any) -> list[tuple[str, str]]:
    response = client.call(method, path, **kwargs)
    assert response.status_code == 422, response.text
    return [(d["field"], d["message"]) for d in response.json()["error"]["details"]]


def berlin_offset_now() -> int:
    shift = datetime.now(ZoneInfo("Europe/Berlin")).utcoffset()
    assert shift is not None
    return int(shift.total_seconds())


@pytest.fixture(scope="module")
def operator(node: NodeProcess) -> Iterator[Client]:
    c = Client(node.api, operator_headers())
    yield c
    c.close()


@pytest.fixture(scope="module")
def project(client: Client) -> int:
    return int(client.data("POST", "/projects", 201, json={"name": "client-fields"})["id"])


def client_job(project: int, **fields: Any) -> dict[str, Any]:
    """A job body as the official client sends it (camelCase, no audit or executor fields)."""
    return {
        "projectId": project,
        "timezone": "Europe/Berlin",
        "spec": "0 9 * * *",
        "callbackUrl": CALLBACK,
        **fields,
    }


# -- job fields ------------------------------------------------------------------------


def test_client_job_fields_come_out_as_window_retry_and_pause(client: Client, project: int) -> None:
    created = client.data(
        "POST",
        "/jobs",
        201,
        json=[
            client_job(
                project,
                startDate="2031-01-06T09:00:00",  # no offset: Berlin's wall clock
                endDate="2031-02-01T00:00:00Z",
                retryMax=4,
                status="inactive",
                timezoneOffset=berlin_offset_now(),
            ),
            client_job(project, startDate="2031-01-06", retryMax=0, status="active"),
        ],
    )
    inactive, active = (client.data("GET", f"/jobs/{job['id']}") for job in created)
    assert created[0]["paused"] is True
    assert (inactive["paused"], inactive["status"], inactive["next_run_at"]) == (
        True,
        "paused",
        None,
    )
    assert (inactive["start_at"], inactive["end_at"]) == (
        "2031-01-06T08:00:00Z",
        "2031-02-01T00:00:00Z",
    )
    assert inactive["retry"]["attempts"] == 4
    # Shown under the client's names too.
    assert (inactive["start_date"], inactive["end_date"], inactive["retry_max"]) == (
        "2031-01-06T08:00:00Z",
        "2031-02-01T00:00:00Z",
        4,
    )
    # The active one is scheduled from its start: 09:00 Berlin on the start day.
    assert (active["paused"], active["status"]) == (False, "active")
    assert active["start_at"] == "2031-01-05T23:00:00Z"
    assert active["next_run_at"] == "2031-01-06T08:00:00Z"
    assert active["retry"]["attempts"] == 0


def test_a_patch_status_pauses_and_resumes_and_retry_max_keeps_the_other_retry_fields(
    client: Client, project: int
) -> None:
    job = client.data(
        "POST",
        "/jobs",
        201,
        json=client_job(project, retry={"attempts": 1, "initialSeconds": 5}),
    )
    path = f"/jobs/{job['id']}"
    paused = client.data("PUT", path, json={"status": "inactive", "retryMax": 7})
    assert (paused["paused"], paused["status"]) == (True, "paused")
    assert (paused["retry"]["attempts"], paused["retry"]["initial_seconds"]) == (7, 5.0)
    assert paused["retry_max"] == 7
    assert client.data("GET", path)["paused"] is True
    resumed = client.data("PUT", path, json={"status": "active", "endDate": "2040-01-01"})
    assert (resumed["paused"], resumed["status"]) == (False, "active")
    assert resumed["end_at"] == "2039-12-31T23:00:00Z"  # midnight in Berlin
    assert resumed["next_run_at"] is not None


def test_bad_client_job_fields_get_422s_naming_them(client: Client, project: int) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"status": "paused"}, "status", "'active' or 'inactive'"),
        ({"retryMax": 3, "retry": {"attempts": 2}}, "retry_max", "disagrees with retry.attempts"),
        ({"startDate": "next tuesday"}, "start_date", "RFC 3339"),
        (
            {"startDate": "2031-01-01T00:00:00Z", "startAt": "2031-01-02T00:00:00Z"},
            "start_date",
            "disagrees with start_at",
        ),
        ({"startDate": "2031-02-01", "endDate": "2031-01-01"}, "end_date", "later than start_date"),
        ({"timezoneOffset": -5 * 3600}, "timezone_offset", "contradicts timezone 'Europe/Berlin'"),
        ({"retryMax": 101}, "retry_max", "less than or equal to 100"),
    ]
    for fields, name, message in cases:
        details = refusal(client, "POST", "/jobs", json=client_job(project, **fields))
        assert len(details) == 1 and details[0][0] == name, (fields, details)
        assert message in details[0][1], (fields, details)
    job = client.data("POST", "/jobs", 201, json=client_job(project))
    details = refusal(client, "PUT", f"/jobs/{job['id']}", json={"status": "on"})
    assert [field for field, _ in details] == ["status"]


# -- lists -------------------------------------------------------------------------------


def sort_key(column: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """How a list ordered by ``column`` (ascending) orders its rows, from
    what the rows show: created_at by id, NULLs first, ties by id."""
    if column in ("id", "created_at"):
        return lambda row: (row["id"],)
    if column == "scheduled_at":
        return lambda row: (row["slot"], row["id"])
    return lambda row: (row[column] is not None, row[column] or "", row["id"])


def check_orders(caller: Client, path: str, key: str, table: str, **params: Any) -> None:
    """``path`` ordered by every column of ``table``, both directions, in both
    spellings of the parameters: the rows in exactly the expected order."""
    for column in ORDERS[table]:
        for direction, spelled in (
            ("asc", ("orderBy", "orderByDirection")),
            ("desc", ("order_by", "order_by_direction")),
        ):
            query = {**params, spelled[0]: column, spelled[1]: direction, "limit": 1000}
            rows = caller.data("GET", path, params=query)[key]
            assert len(rows) >= 3, (path, rows)
            expected = sorted(rows, key=sort_key(column), reverse=direction == "desc")
            assert [r["id"] for r in rows] == [r["id"] for r in expected], (path, column, direction)


def test_projects_jobs_credentials_and_executors_are_ordered_by_each_documented_column(
    client: Client, operator: Client
) -> None:
    ids = [
        client.data("POST", "/projects", 201, json={"name": f"order-{name}"})["id"]
        for name in ("c", "a", "b")
    ]
    client.data("PUT", f"/projects/{ids[0]}", json={"description": "touched last"})
    for project, name in zip(ids, ("job-z", None, "job-x"), strict=True):
        named = {} if name is None else {"name": name}  # an unnamed job sorts first
        client.data("POST", "/jobs", 201, json=client_job(project, **named))
    first_job = client.data("GET", "/jobs", params={"project_id": ids[0]})["jobs"][0]
    client.data("PUT", f"/jobs/{first_job['id']}", json={"spec": "0 10 * * *"})
    for _ in range(3):
        operator.data("POST", "/credentials", 201, json={})
    executors = [
        client.data(
            "POST",
            "/executors",
            201,
            json={"name": name, "type": "webhook_url", "webhookUrl": CALLBACK},
        )["id"]
        for name in ("hook-b", "hook-c", "hook-a")
    ]
    client.data("PUT", f"/executors/{executors[0]}", json={"name": "hook-b2"})
    check_orders(client, "/projects", "projects", "projects")
    check_orders(client, "/executors", "executors", "executors")
    check_orders(client, "/jobs", "jobs", "jobs")
    check_orders(operator, "/credentials", "credentials", "credentials")
    # The client's names of the columns are read as ours.
    newest = client.data(
        "GET", "/projects", params={"orderBy": "dateCreated", "orderByDirection": "DESC"}
    )
    assert newest["projects"][0]["id"] == ids[-1]


def test_an_unknown_order_gets_a_422_naming_the_parameter(client: Client) -> None:
    for path in ("/projects", "/jobs", "/executions", "/executors", "/jobs/1/executions"):
        details = refusal(client, "GET", path, params={"orderBy": "signing_secret"})
        assert [field for field, _ in details] == ["orderBy"]
        assert "must be one of" in details[0][1]
        details = refusal(client, "GET", path, params={"orderByDirection": "sideways"})
        assert details == [("orderByDirection", "must be asc or desc")]
    details = refusal(client, "GET", "/jobs", params={"order_by": "id; DROP TABLE jobs"})
    assert [field for field, _ in details] == ["order_by"]
    details = refusal(
        client, "GET", "/executions", params={"orderDirection": "asc", "orderByDirection": "desc"}
    )
    assert details == [("orderDirection", "disagrees with orderByDirection; send one")]


def test_executions_are_filtered_by_start_and_end_date_and_ordered(
    client: Client, project: int
) -> None:
    # A paused job's backfilled runs stay pending: rows at known minutes.
    job = client.data(
        "POST", "/jobs", 201, json=client_job(project, spec="* * * * *", status="inactive")
    )
    now = int(time.time()) // 60 * 60
    backfilled = client.data(
        "POST",
        f"/jobs/{job['id']}/backfill",
        202,
        json={"from": rfc3339(now - 600), "to": rfc3339(now - 60)},
    )
    assert backfilled["queued"] == 10, backfilled
    window = {"jobId": job["id"], "startDate": rfc3339(now - 480), "endDate": rfc3339(now - 180)}
    rows = client.data("GET", "/executions", params=window)["executions"]
    assert [row["slot"] for row in rows] == [now - 240, now - 300, now - 360, now - 420, now - 480]
    ascending = client.data(
        "GET",
        "/executions",
        params={**window, "orderBy": "lastExecutionDateTime", "orderDirection": "ASC"},
    )["executions"]
    assert [row["slot"] for row in ascending] == [
        now - 480,
        now - 420,
        now - 360,
        now - 300,
        now - 240,
    ]
    check_orders(client, "/executions", "executions", "executions", jobId=job["id"])
    check_orders(client, f"/jobs/{job['id']}/executions", "executions", "executions")


# -- DELETE bodies and X-Account-ID --------------------------------------------------------


def test_deletes_accept_a_json_body(client: Client, operator: Client, project: int) -> None:
    body = {"deletedBy": "someone@example.com"}
    job = client.data("POST", "/jobs", 201, json=client_job(project))
    assert client.data("DELETE", f"/jobs/{job['id']}", json=body) == {
        "id": job["id"],
        "deleted": True,
    }
    assert client.call("GET", f"/jobs/{job['id']}").status_code == 404
    empty = client.data("POST", "/projects", 201, json={"name": "deleted-with-body"})
    assert client.data("DELETE", f"/projects/{empty['id']}", json=body)["deleted"] is True
    credential = operator.data("POST", "/credentials", 201, json={})
    deleted = operator.data("DELETE", f"/credentials/{credential['id']}", json=body)
    assert deleted["deleted"] is True


def test_any_x_account_id_is_accepted_and_changes_nothing(client: Client, project: int) -> None:
    plain = client.data("GET", f"/projects/{project}")
    for account in ("1", "42", "not-a-number"):
        shown = client.data("GET", f"/projects/{project}", headers={"X-Account-ID": account})
        assert shown == plain
    job = client.data(
        "POST", "/jobs", 201, json=client_job(project), headers={"X-Account-ID": "42"}
    )
    assert job["project_id"] == project
