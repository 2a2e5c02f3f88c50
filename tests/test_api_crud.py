"""The happy path of every route on one real node, with the exact shapes answered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.nodes import (
    Client,
    NodeProcess,
    operator_headers,
)

PROJECT_KEYS = {
    "id",
    "name",
    "description",
    "signing_secret",
    "created_at",
    "updated_at",
    "created_by",
    "modified_by",
}
CREDENTIAL_KEYS = {
    "id",
    "api_key",
    "description",
    "archived",
    "scopes",
    "projects",
    "expires_at",
    "created_by",
    "modified_by",
    "created_at",
    "updated_at",
}
JOB_KEYS = {
    "id",
    "project_id",
    "spec",
    "timezone",
    "data",
    "callback_url",
    "executor_id",
    "execution_type",
    "paused",
    "last_execution_date",
    "next_run_at",
    "last_state",
    "last_status_code",
    "fired_count",
    "success_count",
    "failed_count",
    "missed_count",
    "created_at",
    "updated_at",
    "name",
    "labels",
    "created_by",
    "modified_by",
    # status, and the policies (README "Job policies")
    "status",
    "status_note",
    "overlap",
    "retry",
    "timeout_seconds",
    "catchup",
    "catchup_window_seconds",
    "start_at",
    "end_at",
    "jitter_seconds",
    "max_runs",
    "pause_after_failures",
    # the official clients' names of start_at, end_at, retry.attempts
    "start_date",
    "end_date",
    "retry_max",
}
CALLBACK = "http://127.0.0.1:9/callback"  # never called: every spec here is far off


@pytest.fixture(scope="module")
def operator(node: NodeProcess) -> Iterator[Client]:
    c = Client(node.api, operator_headers())
    yield c
    c.close()


@pytest.fixture(scope="module")
def project(client: Client) -> int:
    made: dict[str, Any] = client.data("POST", "/projects", 201, json={"name": "crud"})
    return int(made["id"])


def page(data: dict[str, Any], things: str, total: int, offset: int, limit: int) -> list[Any]:
    assert set(data) == {"total", "offset", "limit", things}, data.keys()
    assert (data["total"], data["offset"], data["limit"]) == (total, offset, limit)
    items: list[Any] = data[things]
    return items


def job(project: int, **fields: Any) -> dict[str, Any]:
    return {"project_id": project, "spec": "0 0 1 1 *", "callback_url": CALLBACK, **fields}


# -- projects ---------------------------------------------------------------------------------


def test_project_life_cycle(client: Client) -> None:
    total = client.data("GET", "/projects")["total"]
    made = client.data("POST", "/projects", 201, json={"name": "p-life", "description": "d"})
    assert set(made) == PROJECT_KEYS
    assert (made["name"], made["description"]) == ("p-life", "d")
    assert made["signing_secret"] and made["created_at"] == made["updated_at"]
    pid = made["id"]
    assert client.data("GET", f"/projects/{pid}") == made

    put = client.data("PUT", f"/projects/{pid}", json={"description": "new"})
    assert (put["name"], put["description"]) == ("p-life", "new")
    patched = client.data("PATCH", f"/projects/{pid}", json={"name": "p-renamed"})
    assert (patched["name"], patched["description"]) == ("p-renamed", "new")
    assert patched["created_at"] == made["created_at"] and patched["signing_secret"]
    assert client.data("GET", f"/projects/{pid}?consistency=strong") == patched

    listed = client.data("GET", "/projects?limit=1000")
    assert patched in page(listed, "projects", total + 1, 0, 1000)
    assert client.data("DELETE", f"/projects/{pid}") == {"id": pid, "deleted": True}
    assert client.call("GET", f"/projects/{pid}").status_code == 404
    assert client.data("GET", "/projects")["total"] == total


def test_project_list_pages(client: Client) -> None:
    for n in range(3):
        client.data("POST", "/projects", 201, json={"name": f"paged-{n}"})
    everything = client.data("GET", "/projects?limit=1000&consistency=strong")
    total = everything["total"]
    ids = [p["id"] for p in page(everything, "projects", total, 0, 1000)]
    assert ids == sorted(ids) and len(ids) == total >= 3
    second = client.data("GET", "/projects?limit=2&offset=1")
    assert [p["id"] for p in page(second, "projects", total, 1, 2)] == ids[1:3]
    past = client.data("GET", f"/projects?offset={total}")
    assert page(past, "projects", total, total, 100) == []


# -- credentials ------------------------------------------------------------------------------


def test_credential_life_cycle(node: NodeProcess, operator: Client) -> None:
    made = operator.data("POST", "/credentials", 201, json={"description": "ci"})
    assert set(made) == CREDENTIAL_KEYS | {"api_secret"}
    assert made["description"] == "ci" and made["archived"] is False
    cid, secret = made["id"], made["api_secret"]
    shown = operator.data("GET", f"/credentials/{cid}")
    assert set(shown) == CREDENTIAL_KEYS and shown["api_key"] == made["api_key"]
    listed = operator.data("GET", "/credentials?limit=1000&consistency=strong")
    items = page(listed, "credentials", listed["total"], 0, 1000)
    assert all(set(item) == CREDENTIAL_KEYS for item in items)
    assert secret not in str(listed) and cid in [item["id"] for item in items]
    bare = operator.data("POST", "/credentials", 201)  # the body is optional
    assert bare["description"] == "" and bare["api_secret"]

    headers = {"x-api-key": made["api_key"], "x-secret-key": secret}
    with httpx.Client(base_url=node.api, headers=headers) as http:
        assert http.get("/projects").status_code == 200
        archived = operator.data("POST", f"/credentials/{cid}/archive")
        assert archived["archived"] is True and set(archived) == CREDENTIAL_KEYS
        assert http.get("/projects").status_code == 401
        restored = operator.data("PUT", f"/credentials/{cid}", json={"archived": False})
        assert restored["archived"] is False
        assert http.get("/projects").status_code == 200
        again = operator.data("PATCH", f"/credentials/{cid}", json={"archived": True})
        assert again["archived"] is True
        assert operator.data("DELETE", f"/credentials/{cid}") == {"id": cid, "deleted": True}
        assert operator.call("GET", f"/credentials/{cid}").status_code == 404
        assert http.get("/projects").status_code == 401


# -- jobs -------------------------------------------------------------------------------------


def test_one_object_in_one_object_out_and_an_array_in_an_array_out(
    client: Client, project: int
) -> None:
    one = client.data("POST", "/jobs", 201, json=job(project, data={"k": [1, 2]}))
    assert set(one) == JOB_KEYS
    assert one["project_id"] == project and one["data"] == {"k": [1, 2]}
    assert (one["timezone"], one["execution_type"], one["paused"]) == ("UTC", "http", False)
    assert one["fired_count"] == 0 and one["last_execution_date"] is None
    many = client.data("POST", "/jobs", 201, json=[job(project), job(project, data="text")])
    assert isinstance(many, list) and [j["data"] for j in many] == [None, "text"]
    assert [j["id"] for j in many] == [one["id"] + 1, one["id"] + 2]
    alone = client.data("POST", "/jobs", 201, json=[job(project)])
    assert isinstance(alone, list) and len(alone) == 1
    camel = client.data(
        "POST",
        "/jobs",
        201,
        json={"projectId": project, "spec": "@hourly", "callbackUrl": CALLBACK, "data": 3},
    )
    assert (camel["project_id"], camel["callback_url"], camel["data"]) == (project, CALLBACK, 3)


def test_job_update_pause_resume_and_delete(client: Client, project: int) -> None:
    made = client.data("POST", "/jobs", 201, json=job(project, data={"v": 1}))
    jid = made["id"]
    changes = {
        "spec": "30 9 * * 1-5",
        "timezone": "America/New_York",
        "data": {"v": 2},
        "callback_url": "https://example.com/new",
    }
    updated = client.data("PUT", f"/jobs/{jid}", json=changes)
    assert {k: updated[k] for k in changes} == changes
    assert client.data("GET", f"/jobs/{jid}") == updated
    patched = client.data("PATCH", f"/jobs/{jid}", json={"data": None, "spec": "@every 90m"})
    assert (patched["data"], patched["spec"], patched["timezone"]) == (
        None,
        "@every 90m",
        "America/New_York",
    )
    assert client.data("GET", f"/jobs/{jid}?consistency=strong") == patched

    assert client.data("POST", f"/jobs/{jid}/pause")["paused"] is True
    assert client.data("GET", f"/jobs/{jid}")["paused"] is True
    assert client.data("POST", f"/jobs/{jid}/pause")["paused"] is True  # idempotent
    assert client.data("POST", f"/jobs/{jid}/resume")["paused"] is False
    assert client.data("GET", f"/jobs/{jid}")["paused"] is False

    history = client.data("GET", f"/jobs/{jid}/executions?consistency=strong")
    assert page(history, "executions", 0, 0, 100) == []

    assert client.data("DELETE", f"/jobs/{jid}") == {"id": jid, "deleted": True}
    for method, suffix in [("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/pause")]:
        body = {"spec": "@daily"} if method == "PUT" else None
        assert client.call(method, f"/jobs/{jid}{suffix}", json=body).status_code == 404


def test_job_list_pages_by_project(client: Client) -> None:
    pid = client.data("POST", "/projects", 201, json={"name": "listing"})["id"]
    made = client.data("POST", "/jobs", 201, json=[job(pid, data=n) for n in range(5)])
    ids = [j["id"] for j in made]
    for key in ("projectId", "project_id"):
        listed = client.data("GET", f"/jobs?{key}={pid}&limit=2&offset=1&consistency=strong")
        assert [j["id"] for j in page(listed, "jobs", 5, 1, 2)] == ids[1:3]
    everything = client.data("GET", "/jobs?limit=10000")
    assert set(ids) <= {j["id"] for j in page(everything, "jobs", everything["total"], 0, 10000)}
    for jid in ids:
        client.data("DELETE", f"/jobs/{jid}")
    assert client.data("GET", f"/jobs?projectId={pid}")["total"] == 0
    assert client.data("DELETE", f"/projects/{pid}")["deleted"] is True


def test_a_5000_job_batch_in_one_post(client: Client) -> None:
    pid = client.data("POST", "/projects", 201, json={"name": "five-thousand"})["id"]
    batch = [job(pid, spec="@every 24h", data={"n": n}) for n in range(5000)]
    made = client.data("POST", "/jobs", 201, json=batch)
    assert len(made) == 5000
    ids = [j["id"] for j in made]
    assert ids == list(range(ids[0], ids[0] + 5000))
    assert [j["data"]["n"] for j in made] == list(range(5000))
    assert client.data("GET", f"/jobs?projectId={pid}&limit=1")["total"] == 5000


# -- executions and status --------------------------------------------------------------------


def test_executions_and_status(client: Client, project: int) -> None:
    everything = client.data("GET", "/executions?consistency=strong")
    assert page(everything, "executions", everything["total"], 0, 100) is not None
    filtered = client.data(
        "GET",
        f"/executions?projectId={project}&state=success&since=2024-01-01T00:00:00Z"
        "&until=4102444800&limit=5&offset=0",
    )
    assert page(filtered, "executions", 0, 0, 5) == []
    status = client.data("GET", "/status")
    assert {"node", "leader", "term", "epoch", "buckets_per_node", "members"} <= set(status)
    assert status["node"]["node_id"] == 1 and status["node"]["raft"]["state"] == "leader"


def test_no_request_caused_an_internal_error(node: NodeProcess) -> None:
    """Runs last: the node logged no unhandled exception for any request above."""
    log = (node.workdir / "node.log").read_text(errors="replace")
    assert "unhandled error" not in log and "Exception in ASGI application" not in log, log[-3000:]
