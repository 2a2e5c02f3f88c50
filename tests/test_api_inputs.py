"""Bad input of every kind, on every route of one real node: a clear 4xx that
names the field (and the item index in a batch), and no change at all.

The node runs with small limits (1,500 jobs and 1 MB per request) so that the
oversize cases stay cheap.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.nodes import (
    SECRETS,
    Client,
    NodeProcess,
    create_credential,
    operator_headers,
    running_node,
)

MAX_JOBS = 1500
BIG_ID = str(2**63)  # one past SQLite's largest row id
UNKNOWN = 999_999
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_failed",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {
        "SCHEDULER0_MAX_JOBS_PER_REQUEST": str(MAX_JOBS),
        "SCHEDULER0_MAX_REQUEST_BODY_MB": "1",
    }
    with running_node(tmp_path_factory.mktemp("n"), extra_env=env) as node:
        yield node


@pytest.fixture(scope="module")
def client_headers(node: NodeProcess) -> dict[str, str]:
    return create_credential(node)


@pytest.fixture(scope="module")
def client(node: NodeProcess, client_headers: dict[str, str]) -> Iterator[Client]:
    c = Client(node.api, client_headers)
    yield c
    c.close()


@pytest.fixture(scope="module")
def operator(node: NodeProcess) -> Iterator[Client]:
    c = Client(node.api, operator_headers())
    yield c
    c.close()


@pytest.fixture(scope="module")
def ids(client: Client, operator: Client) -> dict[str, int]:
    """A project with one job, an empty project and a spare credential."""
    project = client.data("POST", "/projects", 201, json={"name": "inputs"})
    empty = client.data("POST", "/projects", 201, json={"name": "inputs-empty"})
    job = client.data("POST", "/jobs", 201, json=job_body(project["id"]))
    credential = operator.data("POST", "/credentials", 201, json={"description": "spare"})
    return {
        "project": project["id"],
        "empty": empty["id"],
        "job": job["id"],
        "credential": credential["id"],
    }


def job_body(project_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "spec": "0 0 1 1 *",
        "timezone": "UTC",
        "callback_url": "http://127.0.0.1:9/callback",
        "data": {"any": ["json", 1, None]},
        **fields,
    }


def path(template: str, ids: dict[str, int]) -> str:
    return template.format(**ids)


def expect_error(
    response: httpx.Response,
    status: int,
    field: str | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    """The error envelope with ``status``; its details name ``field`` (at ``index``)."""
    assert response.status_code == status, (response.status_code, response.text[:600])
    body = response.json()
    assert body["success"] is False and body["data"] is None, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == CODES[status] and error["message"], error
    if field is not None:
        named = [(d["field"], d.get("index")) for d in error["details"]]
        assert (field, index) in named, (field, index, error)
    return error


def state(client: Client, operator: Client, ids: dict[str, int]) -> Any:
    """Everything a bad request could have touched."""
    return (
        client.data("GET", "/projects?limit=1000"),
        client.data("GET", "/jobs?limit=10000"),
        operator.data("GET", "/credentials?limit=1000"),
    )


@pytest.fixture
def unchanged(client: Client, operator: Client, ids: dict[str, int]) -> Iterator[None]:
    before = state(client, operator, ids)
    yield
    assert state(client, operator, ids) == before, "a rejected request changed state"


# -- authentication ---------------------------------------------------------------------------

ROUTES = [
    ("POST", "/projects"),
    ("GET", "/projects"),
    ("GET", "/projects/{project}"),
    ("PUT", "/projects/{project}"),
    ("PATCH", "/projects/{project}"),
    ("DELETE", "/projects/{empty}"),
    ("POST", "/credentials"),
    ("GET", "/credentials"),
    ("GET", "/credentials/{credential}"),
    ("PUT", "/credentials/{credential}"),
    ("PATCH", "/credentials/{credential}"),
    ("DELETE", "/credentials/{credential}"),
    ("POST", "/credentials/{credential}/archive"),
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{job}"),
    ("PUT", "/jobs/{job}"),
    ("PATCH", "/jobs/{job}"),
    ("DELETE", "/jobs/{job}"),
    ("POST", "/jobs/{job}/pause"),
    ("POST", "/jobs/{job}/resume"),
    ("GET", "/jobs/{job}/executions"),
    ("GET", "/executions"),
    ("GET", "/schedules/preview"),
    ("GET", "/status"),
]
WRITE_BODIES = {
    "/projects": {"name": "never-created"},
    "/projects/{project}": {"name": "never-renamed"},
    "/credentials": {"description": "never-created"},
    "/credentials/{credential}": {"archived": True},
    "/jobs/{job}": {"spec": "@every 1s"},
}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bad_auth(kind: str, client_headers: dict[str, str]) -> dict[str, str]:
    user, password = SECRETS["SCHEDULER0_AUTH_USERNAME"], SECRETS["SCHEDULER0_AUTH_PASSWORD"]
    return {
        "none": {},
        "unknown key": {"x-api-key": "s0k_nope", "x-secret-key": "nope"},
        "wrong secret": {**client_headers, "x-secret-key": "wrong"},
        "key only": {"x-api-key": client_headers["x-api-key"]},
        "wrong basic password": {"authorization": basic(user, "wrong"), "x-peer": "cmd"},
        "wrong basic user": {"authorization": basic("nobody", password), "x-peer": "cmd"},
        "basic without x-peer": {"authorization": basic(user, password)},
        "basic with bad x-peer": {"authorization": basic(user, password), "x-peer": "x"},
        "malformed basic": {"authorization": "Basic !!!not-base64", "x-peer": "cmd"},
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "none",
        "unknown key",
        "wrong secret",
        "key only",
        "wrong basic password",
        "wrong basic user",
        "basic without x-peer",
        "basic with bad x-peer",
        "malformed basic",
    ],
)
def test_every_route_needs_valid_credentials(
    node: NodeProcess,
    client_headers: dict[str, str],
    ids: dict[str, int],
    kind: str,
    unchanged: None,
) -> None:
    with httpx.Client(base_url=node.api, headers=bad_auth(kind, client_headers)) as http:
        for method, template in ROUTES:
            body = WRITE_BODIES.get(template) if method in ("POST", "PUT", "PATCH") else None
            response = http.request(method, path(template, ids), json=body)
            expect_error(response, 401)


def test_archived_and_deleted_credentials_are_refused(
    node: NodeProcess, client: Client, operator: Client
) -> None:
    made = operator.data("POST", "/credentials", 201, json={"description": "short-lived"})
    headers = {"x-api-key": made["api_key"], "x-secret-key": made["api_secret"]}
    with httpx.Client(base_url=node.api, headers=headers) as http:
        assert http.get("/projects").status_code == 200
        operator.data("POST", f"/credentials/{made['id']}/archive")
        for method, template in ROUTES[:6]:
            body = WRITE_BODIES.get(template) if method in ("POST", "PUT", "PATCH") else None
            expect_error(http.request(method, template.format(project=1, empty=1), json=body), 401)
        operator.data("PUT", f"/credentials/{made['id']}", json={"archived": False})
        assert http.get("/projects").status_code == 200
        operator.data("DELETE", f"/credentials/{made['id']}")
        expect_error(http.get("/projects"), 401)


def test_client_keys_are_forbidden_on_credential_routes(
    client: Client, ids: dict[str, int], unchanged: None
) -> None:
    for method, template in ROUTES:
        if template.startswith("/credentials"):
            body = WRITE_BODIES.get(template) if method in ("POST", "PUT", "PATCH") else None
            expect_error(client.call(method, path(template, ids), json=body), 403)


def test_healthcheck_needs_no_auth_and_shows_no_secrets(
    node: NodeProcess, client_headers: dict[str, str], client: Client, ids: dict[str, int]
) -> None:
    response = httpx.get(f"{node.api}/healthcheck")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["data"]["ready"] is True and body["data"]["status"] == "ok"
    signing_secret = client.data("GET", f"/projects/{ids['project']}")["signing_secret"]
    for secret in [*SECRETS.values(), *client_headers.values(), signing_secret]:
        assert secret not in response.text


# -- malformed bodies --------------------------------------------------------------------------

BODY_ROUTES = [
    ("POST", "/projects", "client"),
    ("PUT", "/projects/{project}", "client"),
    ("PATCH", "/projects/{project}", "client"),
    ("POST", "/credentials", "operator"),
    ("PUT", "/credentials/{credential}", "operator"),
    ("POST", "/jobs", "client"),
    ("PUT", "/jobs/{job}", "client"),
    ("PATCH", "/jobs/{job}", "client"),
]


@pytest.mark.parametrize("method, template, who", BODY_ROUTES)
@pytest.mark.parametrize(
    "raw",
    [b"{bad", b'{"name": "x"', b"[1, 2", b"\xff\xfe{}", b"NaN", b"{'single': 'quotes'}", b""],
    ids=["garbage", "unclosed", "unclosed-array", "not-utf8", "nan", "single-quotes", "empty"],
)
def test_malformed_json_is_400(
    client: Client,
    operator: Client,
    ids: dict[str, int],
    method: str,
    template: str,
    who: str,
    raw: bytes,
    unchanged: None,
) -> None:
    if raw == b"" and template == "/credentials":
        pytest.skip("POST /credentials takes an optional body")
    caller = operator if who == "operator" else client
    response = caller.call(
        method, path(template, ids), content=raw, headers={"content-type": "application/json"}
    )
    expect_error(response, 400)


# -- invalid fields ----------------------------------------------------------------------------

P = "{project}"
INVALID = [
    # (method, path, body, field, index)
    ("POST", "/projects", {}, "name", None),
    ("POST", "/projects", {"name": 5}, "name", None),
    ("POST", "/projects", {"name": ""}, "name", None),
    ("POST", "/projects", {"name": "x" * 256}, "name", None),
    ("POST", "/projects", {"name": None}, "name", None),
    ("POST", "/projects", {"name": "ok", "description": 5}, "description", None),
    ("POST", "/projects", {"name": "ok", "colour": "red"}, "colour", None),
    ("POST", "/projects", [{"name": "ok"}], "body", None),
    ("POST", "/projects", "ok", "body", None),
    ("POST", "/projects", None, "body", None),
    ("PUT", "/projects/{project}", {"name": None}, "name", None),
    ("PUT", "/projects/{project}", {"name": ""}, "name", None),
    ("PATCH", "/projects/{project}", {"description": 7}, "description", None),
    ("PATCH", "/projects/{project}", {"description": None}, "description", None),
    ("PATCH", "/projects/{project}", {"id": 9}, "id", None),
    ("PATCH", "/projects/{project}", {}, "body", None),
    ("PUT", "/projects/{project}", [], "body", None),
    ("PUT", "/credentials/{credential}", {"archived": "yes"}, "archived", None),
    ("PUT", "/credentials/{credential}", {"archived": 1}, "archived", None),
    ("PUT", "/credentials/{credential}", {"archived": None}, "archived", None),
    ("PUT", "/credentials/{credential}", {}, "archived", None),
    ("PATCH", "/credentials/{credential}", {"archived": True, "api_key": "x"}, "api_key", None),
    ("POST", "/credentials", {"description": 5}, "description", None),
    ("POST", "/credentials", {"api_key": "mine"}, "api_key", None),
    ("POST", "/credentials", [], "body", None),
    ("POST", "/credentials", {"scopes": []}, "scopes", None),
    ("POST", "/credentials", {"scopes": ["read", "root"]}, "scopes", None),
    ("POST", "/credentials", {"scopes": "read"}, "scopes", None),
    ("POST", "/credentials", {"scopes": [1]}, "scopes", None),
    ("POST", "/credentials", {"scopes": None}, "scopes", None),
    ("POST", "/credentials", {"projects": [0]}, "projects.0", None),
    ("POST", "/credentials", {"projects": ["1"]}, "projects.0", None),
    ("POST", "/credentials", {"projects": [UNKNOWN]}, "projects", None),
    ("POST", "/credentials", {"projects": list(range(1, 1002))}, "projects", None),
    ("POST", "/credentials", {"expires_at": 1}, "expires_at", None),  # in the past
    ("POST", "/credentials", {"expiresAt": "tomorrow"}, "expires_at", None),
    ("POST", "/credentials", {"expires_at": True}, "expires_at", None),
    ("POST", "/credentials", {"expires_at": 1e300}, "expires_at", None),
    ("POST", "/credentials", {"expiresInSeconds": 0}, "expires_in_seconds", None),
    (
        "POST",
        "/credentials",
        {"expires_at": "2100-01-01T00:00:00Z", "expires_in_seconds": 60},
        "expires_in_seconds",
        None,
    ),
    ("POST", "/credentials", {"createdBy": 5}, "created_by", None),
    # jobs, one object
    ("POST", "/jobs", {}, "project_id", 0),  # missing
    ("POST", "/jobs", {P: "1"}, "project_id", 0),
    ("POST", "/jobs", {P: True}, "project_id", 0),
    ("POST", "/jobs", {P: 1.5}, "project_id", 0),
    ("POST", "/jobs", {P: 0}, "project_id", 0),
    ("POST", "/jobs", {P: UNKNOWN}, "project_id", 0),
    ("POST", "/jobs", {P: 2**63}, "project_id", 0),
    ("POST", "/jobs", {"spec": 5}, "spec", 0),
    ("POST", "/jobs", {"spec": None}, "spec", 0),
    ("POST", "/jobs", {"spec": ""}, "spec", 0),
    ("POST", "/jobs", {"spec": "every minute"}, "spec", 0),
    ("POST", "/jobs", {"spec": "61 * * * *"}, "spec", 0),
    ("POST", "/jobs", {"spec": "* * * * * * *"}, "spec", 0),
    ("POST", "/jobs", {"spec": "0 0 30 2 *"}, "spec", 0),
    ("POST", "/jobs", {"spec": "@every 0s"}, "spec", 0),
    ("POST", "/jobs", {"spec": "@fortnightly"}, "spec", 0),
    ("POST", "/jobs", {"spec": "*/60 * * * *"}, "spec", 0),
    ("POST", "/jobs", {"timezone": "Mars/Olympus_Mons"}, "timezone", 0),
    ("POST", "/jobs", {"timezone": ""}, "timezone", 0),
    ("POST", "/jobs", {"timezone": 5}, "timezone", 0),
    ("POST", "/jobs", {"timezone": None}, "timezone", 0),
    ("POST", "/jobs", {"callback_url": "ftp://example.com/x"}, "callback_url", 0),
    ("POST", "/jobs", {"callback_url": "not a url"}, "callback_url", 0),
    ("POST", "/jobs", {"callback_url": "/relative/path"}, "callback_url", 0),
    ("POST", "/jobs", {"callback_url": "http://exa mple.com/"}, "callback_url", 0),
    ("POST", "/jobs", {"callback_url": "http://example.com:99999/"}, "callback_url", 0),
    ("POST", "/jobs", {"callback_url": "http://example.com/\n"}, "callback_url", 0),
    ("POST", "/jobs", {"callback_url": "http://x/" + "a" * 2048}, "callback_url", 0),
    ("POST", "/jobs", {"callback_url": 80}, "callback_url", 0),
    ("POST", "/jobs", {"execution_type": "grpc"}, "execution_type", 0),
    ("POST", "/jobs", {"projectId": 1}, "project_id", 0),  # given twice
    ("POST", "/jobs", {"owner": "me"}, "owner", 0),
    # jobs, a batch
    ("POST", "/jobs", [], "body", None),
    ("POST", "/jobs", "jobs", "body", None),
    ("POST", "/jobs", 42, "body", None),
    ("POST", "/jobs", [1], "body", 0),
    ("POST", "/jobs", [{}, {"spec": "nope"}], "spec", 1),
    # job updates
    ("PUT", "/jobs/{job}", {"spec": "nope"}, "spec", None),
    ("PUT", "/jobs/{job}", {"spec": 5}, "spec", None),
    ("PUT", "/jobs/{job}", {"spec": "0 */24 * * *"}, "spec", None),
    ("PUT", "/jobs/{job}", {"spec": None}, "spec", None),
    ("PATCH", "/jobs/{job}", {"timezone": "Nowhere/Town"}, "timezone", None),
    ("PATCH", "/jobs/{job}", {"timezone": None}, "timezone", None),
    ("PATCH", "/jobs/{job}", {"callback_url": "ftp://x"}, "callback_url", None),
    ("PATCH", "/jobs/{job}", {"callbackUrl": None}, "callback_url", None),
    ("PATCH", "/jobs/{job}", {"execution_type": "smtp"}, "execution_type", None),
    ("PATCH", "/jobs/{job}", {"project_id": 2}, "project_id", None),
    ("PATCH", "/jobs/{job}", {"spec": "@every 1m", "callback_url": "nope"}, "callback_url", None),
    ("PATCH", "/jobs/{job}", {}, "body", None),
]


def complete(body: Any, field: str, ids: dict[str, int]) -> Any:
    """Job bodies in INVALID hold only what is wrong; this adds a valid rest.
    ``{P: value}`` is a valid job with that project_id; ``{}`` for project_id
    is a job without one."""
    if isinstance(body, list):
        return [complete(item, field, ids) for item in body]
    if not isinstance(body, dict):
        return body
    if P in body:
        return job_body(body[P])
    base = job_body(ids["project"])
    if field == "project_id" and not body:
        del base["project_id"]
    return {**base, **body}


@pytest.mark.parametrize("method, template, body, field, index", INVALID)
def test_invalid_fields_are_422_naming_the_field(
    client: Client,
    operator: Client,
    ids: dict[str, int],
    method: str,
    template: str,
    body: Any,
    field: str,
    index: int | None,
    unchanged: None,
) -> None:
    if template == "/jobs":
        body = complete(body, field, ids)
    caller = operator if template.startswith("/credentials") else client
    raw = json.dumps(body).encode()  # json=None would send no body at all
    response = caller.call(method, path(template, ids), content=raw)
    expect_error(response, 422, field, index)


def test_bad_item_in_a_batch_of_1000_creates_nothing(
    client: Client, ids: dict[str, int], unchanged: None
) -> None:
    project = ids["project"]
    before = client.data("GET", f"/jobs?projectId={project}")["total"]
    batch = [job_body(project, data={"n": i}) for i in range(1000)]
    batch[500] = job_body(project, spec="0 25 * * *")
    expect_error(client.call("POST", "/jobs", json=batch), 422, "spec", 500)
    # Several bad items: every one is named, with its index.
    batch[500] = job_body(project)
    batch[3] = job_body(project, timezone="Atlantis/Capital")
    batch[999] = job_body(project, callback_url="gopher://x")
    batch[640] = job_body(UNKNOWN)
    error = expect_error(client.call("POST", "/jobs", json=batch), 422, "timezone", 3)
    assert ("callback_url", 999) in [(d["field"], d.get("index")) for d in error["details"]]
    # Unknown projects are reported once the items themselves are valid.
    batch[3], batch[999] = job_body(project), job_body(project)
    expect_error(client.call("POST", "/jobs", json=batch), 422, "project_id", 640)
    assert client.data("GET", f"/jobs?projectId={project}")["total"] == before


def test_oversize_batch_and_body_are_413(
    client: Client, ids: dict[str, int], unchanged: None
) -> None:
    tiny = {"project_id": ids["project"], "spec": "@daily", "callback_url": "http://x"}
    expect_error(client.call("POST", "/jobs", json=[tiny] * (MAX_JOBS + 1)), 413)
    blob = "x" * (1024 * 1024 + 1)
    expect_error(client.call("POST", "/jobs", json=job_body(ids["project"], data=blob)), 413)
    expect_error(client.call("POST", "/projects", json={"name": "big", "description": blob}), 413)
    expect_error(client.call("PATCH", f"/jobs/{ids['job']}", json={"data": blob}), 413)


def test_camel_and_snake_case_are_both_accepted(client: Client, ids: dict[str, int]) -> None:
    camel = {
        "projectId": ids["project"],
        "spec": "@weekly",
        "callbackUrl": "https://example.com/hook",
        "executionType": "http",
    }
    snake = {
        "project_id": ids["project"],
        "spec": "@weekly",
        "callback_url": "https://example.com/hook",
        "execution_type": "http",
    }
    made = client.data("POST", "/jobs", 201, json=[camel, snake])
    assert [(j["project_id"], j["callback_url"]) for j in made] == [
        (ids["project"], "https://example.com/hook")
    ] * 2
    job = made[0]["id"]
    updated = client.data("PATCH", f"/jobs/{job}", json={"callbackUrl": "https://example.com/b"})
    assert updated["callback_url"] == "https://example.com/b"
    for job in made:
        client.data("DELETE", f"/jobs/{job['id']}")


# -- ids in paths -----------------------------------------------------------------------------

ID_ROUTES = [
    (method, template)
    for method, template in ROUTES
    if "{" in template and not template.startswith("/projects/{empty}")
] + [("DELETE", "/projects/{project}")]


def _at(template: str, value: str) -> str:
    return template.split("{")[0] + value + template.split("}")[1]


@pytest.mark.parametrize("method, template", ID_ROUTES)
def test_bad_and_unknown_ids_in_paths(
    client: Client, operator: Client, method: str, template: str, unchanged: None
) -> None:
    caller = operator if template.startswith("/credentials") else client
    body = WRITE_BODIES.get(template) if method in ("POST", "PUT", "PATCH") else None
    for bad in ["abc", "0", "-1", "1.5", "1e3", BIG_ID, "9" * 30]:
        expect_error(caller.call(method, _at(template, bad), json=body), 422, "id")
    expect_error(caller.call(method, _at(template, str(UNKNOWN)), json=body), 404)


# -- query parameters -------------------------------------------------------------------------

QUERIES = [
    ("/projects", "limit=0", "limit"),
    ("/projects", "limit=1001", "limit"),
    ("/projects", "limit=ten", "limit"),
    ("/projects", "offset=-1", "offset"),
    ("/projects", "offset=1.5", "offset"),
    ("/projects", "consistency=eventual", "consistency"),
    ("/credentials", "limit=-5", "limit"),
    ("/credentials", "offset=x", "offset"),
    ("/jobs", "projectId=abc", "projectId"),
    ("/jobs", "project_id=0", "project_id"),
    ("/jobs", f"projectId={BIG_ID}", "projectId"),
    ("/jobs", "projectId=1&project_id=2", "project_id"),
    ("/jobs", "limit=10001", "limit"),
    ("/jobs", "offset=-3", "offset"),
    ("/jobs/{job}", "consistency=sometimes", "consistency"),
    ("/jobs/{job}/executions", "since=yesterday", "since"),
    ("/jobs/{job}/executions", "until=nan", "until"),
    ("/jobs/{job}/executions", "limit=0", "limit"),
    ("/executions", "state=exploded", "state"),
    ("/executions", "since=2024-13-01", "since"),
    ("/executions", "until=inf", "until"),
    ("/executions", "since=1e999", "since"),
    ("/executions", "jobId=0", "jobId"),
    ("/executions", "job_id=x", "job_id"),
    ("/executions", "projectId=-1", "projectId"),
    ("/executions", "limit=1001", "limit"),
    ("/executions", "offset=z", "offset"),
]


@pytest.mark.parametrize("template, query, field", QUERIES)
def test_bad_query_parameters_are_422_naming_the_parameter(
    client: Client, operator: Client, ids: dict[str, int], template: str, query: str, field: str
) -> None:
    caller = operator if template.startswith("/credentials") else client
    expect_error(caller.call("GET", f"{path(template, ids)}?{query}"), 422, field)


def test_listing_jobs_of_an_unknown_project_is_404(client: Client) -> None:
    expect_error(client.call("GET", f"/jobs?projectId={UNKNOWN}"), 404)


# -- conflicts ---------------------------------------------------------------------------------


def test_conflicts_are_409_and_change_nothing(
    client: Client, ids: dict[str, int], unchanged: None
) -> None:
    expect_error(client.call("POST", "/projects", json={"name": "inputs"}), 409, "name")
    renamed = client.call("PUT", f"/projects/{ids['empty']}", json={"name": "inputs"})
    expect_error(renamed, 409, "name")
    expect_error(client.call("DELETE", f"/projects/{ids['project']}"), 409)
    assert client.data("GET", f"/jobs/{ids['job']}")["project_id"] == ids["project"]


# -- routing -----------------------------------------------------------------------------------


def test_unknown_routes_and_methods_answer_in_the_envelope(client: Client) -> None:
    expect_error(client.call("GET", "/nope"), 404)
    expect_error(client.call("GET", "/jobs/1/pause"), 405)
    expect_error(client.call("DELETE", "/projects"), 405)


def test_batch_at_the_limit_is_accepted(client: Client, operator: Client) -> None:
    project = client.data("POST", "/projects", 201, json={"name": "at-the-limit"})["id"]
    tiny = {"project_id": project, "spec": "@daily", "callback_url": "http://x"}
    assert len(client.data("POST", "/jobs", 201, json=[tiny] * MAX_JOBS)) == MAX_JOBS
    assert client.data("GET", f"/jobs?projectId={project}")["total"] == MAX_JOBS


def test_no_request_caused_an_internal_error(node: NodeProcess) -> None:
    """Runs last: the node logged no unhandled exception for any request above."""
    log = (node.workdir / "node.log").read_text(errors="replace")
    assert "unhandled error" not in log and "Exception in ASGI application" not in log, log[-3000:]
