"""The permission matrix, generated from the route table: every route of
``app.ROUTES`` is called on a real node by every kind of caller (no
credentials, a wrong secret, an archived and an expired credential, each scope
limited to one project acting inside it and outside it, each scope on every
project, and the operator), and must answer what its ``Permission`` row says:
401, 403 for a kind or scope too weak, 404 (the answer a missing one gets) for
a project or job outside the credential's projects, 422 for a job item of such
a project, or the route's own answer. Lists must leave the others' rows out,
and only operators and ``admin`` credentials see signing secrets.

The expected answer comes from the table, never from this module: a route
needs only an example request here (``EXAMPLES``), and a route without one
fails the test, so no route can be added without being in the matrix. Run with
``-s`` to see the counts.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from scheduler0.daemon.api.app import ROUTES
from scheduler0.daemon.api.auth import Access, On
from scheduler0.daemon.api.describe import RouteSpec
from scheduler0.daemon.api.shapes import ProjectPage
from scheduler0.models import CredentialScope, ProjectOut
from tests.support.nodes import Client, NodeProcess, operator_headers, wait_until

pytestmark = pytest.mark.integration

CALLBACK = "http://127.0.0.1:9/callback"  # the discard port: nothing answers
YEARLY = "0 0 1 1 *"  # never due while the test runs


@dataclass(frozen=True)
class Caller:
    """One column of the matrix."""

    name: str
    headers: dict[str, str]
    refused: bool = False
    """No, wrong, archived or expired credentials: every guarded route answers 401."""
    operator: bool = False
    scope: CredentialScope | None = None
    limited: bool = False
    """The credential is limited to the inside project."""
    outside: bool = False
    """Acting on the other project (a limited credential only)."""

    def may(self, scope: CredentialScope | None) -> bool:
        return self.operator or self.scope in (scope, CredentialScope.ADMIN)


@dataclass
class World:
    """What the requests act on: a project inside the limited credentials'
    projects and one outside, each with a job that has run once."""

    operator: Client
    inside: int
    outside: int
    jobs: dict[int, int]
    executor: int
    """An executor that the requests read and change (executors serve the whole account)."""
    names: Iterator[int] = field(default_factory=itertools.count)

    def project(self, caller: Caller) -> int:
        return self.outside if caller.outside else self.inside

    def job(self, caller: Caller) -> int:
        return self.jobs[self.project(caller)]

    def new_job(self, caller: Caller) -> int:
        """A job of its own, for a request that deletes or runs it."""
        created = self.operator.data("POST", "/jobs", 201, json=job_body(self.project(caller)))
        return int(created["id"])

    def new_credential(self) -> int:
        created = self.operator.data("POST", "/credentials", 201, json={"description": "x"})
        return int(created["id"])

    def name(self) -> str:
        return f"matrix-{next(self.names)}"

    def new_executor(self) -> int:
        """An executor of its own, for a request that deletes it."""
        return int(self.operator.data("POST", "/executors", 201, json=executor_body())["id"])


def job_body(project_id: int) -> dict[str, Any]:
    return {"project_id": project_id, "spec": YEARLY, "callback_url": CALLBACK}


def executor_body() -> dict[str, Any]:
    return {"name": "matrix", "type": "webhook_url", "webhookUrl": CALLBACK}


def key_client(node: NodeProcess, operator: Client, **body: Any) -> Client:
    """A client on a credential the operator makes (``body``: its scopes, projects)."""
    made = operator.data("POST", "/credentials", 201, json=body)
    return Client(node.api, {"x-api-key": made["api_key"], "x-secret-key": made["api_secret"]})


@dataclass(frozen=True)
class Request:
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    """A request a permitted caller may make of one route, and what it answers
    (the route's success status unless ``allowed`` says otherwise)."""

    build: Callable[[World, Caller], Request]
    allowed: int | None = None
    outside_list: int = 200
    """For a list: the answer to a filter by the outside project."""


def same(path: str) -> Callable[[World, Caller], Request]:
    return lambda world, caller: Request(path)


def on_project(suffix: str = "", body: Any = None) -> Callable[[World, Caller], Request]:
    return lambda world, caller: Request(f"/projects/{world.project(caller)}{suffix}", body)


def on_job(suffix: str = "", body: Any = None) -> Callable[[World, Caller], Request]:
    return lambda world, caller: Request(f"/jobs/{world.job(caller)}{suffix}", body)


def on_new_job(suffix: str = "") -> Callable[[World, Caller], Request]:
    return lambda world, caller: Request(f"/jobs/{world.new_job(caller)}{suffix}")


def filtered(world: World, caller: Caller, path: str) -> Request:
    """A list, filtered by the outside project when acting outside."""
    return Request(path, params={"projectId": world.outside} if caller.outside else {})


EXAMPLES: dict[tuple[str, str], Example] = {
    ("POST", "/projects"): Example(lambda w, c: Request("/projects", {"name": w.name()})),
    ("GET", "/projects"): Example(same("/projects")),
    ("GET", "/projects/{id}"): Example(on_project()),
    ("PUT", "/projects/{id}"): Example(on_project(body={"description": "changed"})),
    ("PATCH", "/projects/{id}"): Example(on_project(body={"description": "patched"})),
    # Refused by the project itself (it has jobs): the permission let it through.
    ("DELETE", "/projects/{id}"): Example(on_project(), allowed=409),
    ("POST", "/projects/{id}/signing-secret"): Example(on_project("/signing-secret")),
    ("POST", "/credentials"): Example(same("/credentials")),
    ("GET", "/credentials"): Example(same("/credentials")),
    ("GET", "/credentials/{id}"): Example(
        lambda w, c: Request(f"/credentials/{w.new_credential()}")
    ),
    ("PUT", "/credentials/{id}"): Example(
        lambda w, c: Request(f"/credentials/{w.new_credential()}", {"archived": False})
    ),
    ("PATCH", "/credentials/{id}"): Example(
        lambda w, c: Request(f"/credentials/{w.new_credential()}", {"archived": True})
    ),
    ("POST", "/credentials/{id}/archive"): Example(
        lambda w, c: Request(f"/credentials/{w.new_credential()}/archive")
    ),
    ("DELETE", "/credentials/{id}"): Example(
        lambda w, c: Request(f"/credentials/{w.new_credential()}")
    ),
    ("POST", "/executors"): Example(lambda w, c: Request("/executors", executor_body())),
    ("GET", "/executors"): Example(same("/executors")),
    ("GET", "/executors/{id}"): Example(lambda w, c: Request(f"/executors/{w.executor}")),
    ("PUT", "/executors/{id}"): Example(
        lambda w, c: Request(f"/executors/{w.executor}", {"name": "changed"})
    ),
    ("PATCH", "/executors/{id}"): Example(
        lambda w, c: Request(f"/executors/{w.executor}", {"modifiedBy": "matrix"})
    ),
    ("DELETE", "/executors/{id}"): Example(
        lambda w, c: Request(f"/executors/{w.new_executor()}", {"deletedBy": "matrix"})
    ),
    ("POST", "/jobs"): Example(lambda w, c: Request("/jobs", [job_body(w.project(c))])),
    ("GET", "/jobs"): Example(lambda w, c: filtered(w, c, "/jobs"), outside_list=404),
    ("GET", "/jobs/{id}"): Example(on_job()),
    ("PUT", "/jobs/{id}"): Example(on_job(body={"data": {"changed": True}})),
    ("PATCH", "/jobs/{id}"): Example(on_job(body={"data": {"patched": True}})),
    ("DELETE", "/jobs/{id}"): Example(on_new_job()),
    ("POST", "/jobs/{id}/pause"): Example(on_job("/pause")),
    ("POST", "/jobs/{id}/resume"): Example(on_job("/resume")),
    ("POST", "/jobs/{id}/run"): Example(on_new_job("/run")),
    ("POST", "/jobs/{id}/backfill"): Example(
        on_job("/backfill", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T01:00:00Z"})
    ),
    ("GET", "/jobs/{id}/executions"): Example(on_job("/executions")),
    ("GET", "/executions"): Example(lambda w, c: filtered(w, c, "/executions")),
    ("GET", "/audit"): Example(lambda w, c: filtered(w, c, "/audit")),
    ("GET", "/schedules/preview"): Example(
        lambda w, c: Request("/schedules/preview", params={"spec": "0 9 * * 1-5"})
    ),
    ("GET", "/healthcheck"): Example(same("/healthcheck")),
    ("GET", "/status"): Example(same("/status")),
    ("GET", "/metrics"): Example(same("/metrics")),
    ("GET", "/cluster"): Example(same("/cluster")),
    ("GET", "/peer/status"): Example(same("/peer/status")),
    # Membership is not changed on a one-node cluster: an invalid member and an
    # unknown one show that the permission let the operator through.
    ("POST", "/cluster/members"): Example(lambda w, c: Request("/cluster/members", {}), 422),
    ("DELETE", "/cluster/members/{id}"): Example(same("/cluster/members/99"), allowed=404),
    ("GET", "/backup"): Example(same("/backup")),
    ("GET", "/openapi.json"): Example(same("/openapi.json")),
    ("GET", "/docs"): Example(same("/docs")),
}  # fmt: skip


def operations() -> list[tuple[str, RouteSpec]]:
    return [(method, spec) for spec in ROUTES for method in spec.methods]


def expected(method: str, spec: RouteSpec, caller: Caller) -> int:
    """What the permission row of ``spec`` says ``caller`` gets."""
    permission, example = spec.permission, EXAMPLES[(method, spec.path)]
    allowed = example.allowed or spec.reply.status
    if permission.access is Access.PUBLIC:
        return allowed
    if caller.refused:
        return 401
    if permission.access is Access.OPERATOR and not caller.operator:
        return 403
    if not caller.may(permission.scope):
        return 403
    if not caller.limited:
        return allowed
    if permission.on in (On.NEW_PROJECT, On.ACCOUNT):
        return 403
    if not caller.outside:
        return allowed
    return {
        On.PROJECT: 404,
        On.JOB: 404,
        On.JOB_ITEMS: 422,
        On.LISTS: example.outside_list,
    }.get(permission.on, allowed)


def check_answer(
    world: World, spec: RouteSpec, caller: Caller, request: Request, answer: httpx.Response
) -> str | None:
    """What is wrong with a permitted or hidden answer beyond its status."""
    on = spec.permission.on
    if answer.status_code == 404 and caller.outside and on in (On.PROJECT, On.JOB, On.LISTS):
        hidden = request.path.split("/")[2] if on is not On.LISTS else str(world.outside)
        noun = "job" if on is On.JOB else "project"
        wanted = f"no {noun} with id {hidden}"  # exactly what a missing one gets
        if answer.json()["error"]["message"] != wanted:
            return f"404 says {answer.json()['error']['message']!r}, not {wanted!r}"
        return None
    if answer.status_code == 422 and on is On.JOB_ITEMS:
        details = answer.json()["error"]["details"]
        wanted = [
            {"field": "project_id", "message": f"no project with id {world.outside}", "index": 0}
        ]
        return None if details == wanted else f"422 details {details}"
    if answer.status_code >= 300 or not spec.reply.enveloped:
        return None
    data = answer.json()["data"]
    if spec.reply.model in (ProjectOut, ProjectPage):
        projects = data["projects"] if spec.reply.model is ProjectPage else [data]
        secrets = {"signing_secret" in project for project in projects}
        if secrets - {caller.may(CredentialScope.ADMIN)}:
            return f"signing_secret shown: {secrets}"
    if on is On.LISTS and caller.limited:
        return check_list(world, request, data)
    return None


def check_list(world: World, request: Request, data: dict[str, Any]) -> str | None:
    """A limited caller's list holds its project's rows only (some of them,
    unless filtered by the outside project), and counts no other."""
    rows = next(value for value in data.values() if isinstance(value, list))
    projects = {row.get("project_id", row["id"]) for row in rows}
    filtered = bool(request.params)
    wanted = set() if filtered else {world.inside}
    if projects != wanted or (data["total"] == 0) != filtered:
        return f"list shows projects {sorted(projects)} (total {data['total']})"
    return None


def make_callers(node: NodeProcess, world: World) -> list[Caller]:
    operator = world.operator

    def credential(archive: bool = False, **body: Any) -> dict[str, str]:
        made = operator.data("POST", "/credentials", 201, json=body)
        if archive:
            operator.data("POST", f"/credentials/{made['id']}/archive")
        return {"x-api-key": made["api_key"], "x-secret-key": made["api_secret"]}

    archived = credential(archive=True, description="archived")
    expired = credential(description="expired", expires_in_seconds=1)
    probe = Client(node.api, expired)
    try:
        wait_until(lambda: probe.call("GET", "/status").status_code == 401, 30, what="the expiry")
    finally:
        probe.close()
    callers = [
        Caller("no credentials", {}, refused=True),
        Caller("wrong secret", {**archived, "x-secret-key": "wrong"}, refused=True),
        Caller("archived", archived, refused=True),
        Caller("expired", expired, refused=True),
    ]
    for scope in CredentialScope:
        limited = credential(scopes=[scope], projects=[world.inside])
        everywhere = credential(scopes=[scope])
        callers += [
            Caller(f"{scope} inside", limited, scope=scope, limited=True),
            Caller(f"{scope} outside", limited, scope=scope, limited=True, outside=True),
            Caller(f"{scope} every project", everywhere, scope=scope),
        ]
    callers.append(Caller("operator", operator_headers(), operator=True))
    return callers


def make_world(operator: Client) -> World:
    inside = operator.data("POST", "/projects", 201, json={"name": "inside"})["id"]
    outside = operator.data("POST", "/projects", 201, json={"name": "outside"})["id"]
    jobs = {}
    for project in (inside, outside):
        jobs[project] = operator.data("POST", "/jobs", 201, json=job_body(project))["id"]
        operator.data("POST", f"/jobs/{jobs[project]}/run", 202)  # an execution row each
        gone = operator.data("POST", "/jobs", 201, json=job_body(project))["id"]
        operator.data("DELETE", f"/jobs/{gone}")  # an audit record each
    executor = operator.data("POST", "/executors", 201, json=executor_body())["id"]
    return World(operator, inside, outside, jobs, executor)


def test_every_route_has_an_example_in_the_matrix() -> None:
    declared = {(method, spec.path) for method, spec in operations()}
    assert declared - set(EXAMPLES) == set(), "routes without a row in the matrix"
    assert set(EXAMPLES) - declared == set(), "examples of routes that do not exist"


def test_every_route_answers_every_caller_as_its_permission_row_says(
    node: NodeProcess,
) -> None:
    operator = Client(node.api, operator_headers())
    plain = httpx.Client(base_url=node.api, timeout=30.0)
    try:
        world = make_world(operator)
        callers = make_callers(node, world)
        failures: list[str] = []
        statuses: collections.Counter[int] = collections.Counter()
        for (method, spec), caller in itertools.product(operations(), callers):
            request = EXAMPLES[(method, spec.path)].build(world, caller)
            answer = plain.request(
                method,
                request.path,
                json=request.json,
                params=request.params,
                headers=caller.headers,
            )
            statuses[answer.status_code] += 1
            want = expected(method, spec, caller)
            where = f"{method} {request.path} {request.params or ''} as {caller.name}"
            if answer.status_code != want:
                failures.append(f"{where}: {answer.status_code}, not {want}: {answer.text[:200]}")
                continue
            problem = check_answer(world, spec, caller, request, answer)
            if problem is not None:
                failures.append(f"{where}: {problem}")
    finally:
        plain.close()
        operator.close()
    total = sum(statuses.values())
    print(
        f"\npermission matrix: {len(operations())} operations x {len(callers)} callers ="
        f" {total} requests on a real node; answers: "
        + ", ".join(f"{status} x{count}" for status, count in sorted(statuses.items()))
        + f"; {len(failures)} wrong"
    )
    assert failures == [], "\n".join(failures[:40])


def test_pausing_through_a_patch_needs_the_execute_scope_as_pause_does(node: NodeProcess) -> None:
    """``PATCH /jobs/{id}`` with a ``status`` that pauses or resumes the job
    is what ``/pause`` and ``/resume`` do, and needs their scope; a status the
    job already has changes nothing and needs none."""
    operator = Client(node.api, operator_headers())
    try:
        project = operator.data("POST", "/projects", 201, json={"name": "patch-status"})["id"]
        job = operator.data("POST", "/jobs", 201, json=job_body(project))["id"]

        writer = key_client(node, operator, scopes=["read", "write"])
        runner = key_client(node, operator, scopes=["read", "write", "execute"])
        try:
            refused = writer.call("PATCH", f"/jobs/{job}", json={"status": "inactive"})
            assert refused.status_code == 403, refused.text
            assert "execute scope" in refused.text
            assert writer.data("GET", f"/jobs/{job}")["status"] == "active"
            same = writer.data("PATCH", f"/jobs/{job}", json={"status": "active", "data": "x"})
            assert (same["status"], same["data"]) == ("active", "x")
            paused = runner.data("PATCH", f"/jobs/{job}", json={"status": "inactive"})
            assert paused["status"] == "paused"
            assert (
                writer.call("PATCH", f"/jobs/{job}", json={"status": "active"}).status_code == 403
            )
        finally:
            writer.close()
            runner.close()
    finally:
        operator.close()


def test_a_credential_limited_to_projects_sees_no_other_tenants_in_the_nodes_status(
    node: NodeProcess,
) -> None:
    """``/status`` and ``/cluster`` hold the cluster's totals and the callback
    hosts in trouble, which are every project's: a credential limited to some
    projects gets them empty; one on every project, as before."""
    operator = Client(node.api, operator_headers())
    try:
        mine = operator.data("POST", "/projects", 201, json={"name": "status-mine"})["id"]
        theirs = operator.data("POST", "/projects", 201, json={"name": "status-theirs"})["id"]
        operator.data("POST", "/jobs", 201, json=job_body(theirs))

        limited = key_client(node, operator, scopes=["read"], projects=[mine])
        everywhere = key_client(node, operator, scopes=["read"])
        try:
            seen = limited.data("GET", "/status")["node"]
            assert (seen["counts"], seen["worst_destinations"]) == ({}, [])
            assert all(m["counts"] == {} for m in limited.data("GET", "/cluster")["members"])
            assert everywhere.data("GET", "/status")["node"]["counts"]["jobs"] >= 1
            assert all(
                m["counts"]["jobs"] >= 1 for m in everywhere.data("GET", "/cluster")["members"]
            )
        finally:
            limited.close()
            everywhere.close()
    finally:
        operator.close()


def test_an_executors_job_count_shows_a_limited_credential_only_its_projects_jobs(
    node: NodeProcess,
) -> None:
    operator = Client(node.api, operator_headers())
    try:
        mine = operator.data("POST", "/projects", 201, json={"name": "executor-mine"})["id"]
        theirs = operator.data("POST", "/projects", 201, json={"name": "executor-theirs"})["id"]
        body = {**executor_body(), "name": "shared-count"}
        executor = operator.data("POST", "/executors", 201, json=body)["id"]
        for project in (mine, theirs, theirs):
            job = {"project_id": project, "spec": YEARLY, "executor_id": executor}
            operator.data("POST", "/jobs", 201, json=job)

        limited = key_client(node, operator, scopes=["read"], projects=[mine])
        everywhere = key_client(node, operator, scopes=["read"])
        try:
            for reader, jobs in ((limited, 1), (everywhere, 3), (operator, 3)):
                assert reader.data("GET", f"/executors/{executor}")["jobs"] == jobs
                listed = reader.data("GET", "/executors", params={"limit": 1000})["executors"]
                assert [e["jobs"] for e in listed if e["id"] == executor] == [jobs]
        finally:
            limited.close()
            everywhere.close()
    finally:
        operator.close()
