"""Audit fields and the audit log on a real node: the bodies the official
clients send (``createdBy``, ``modifiedBy``, ``deletedBy`` in a DELETE's
JSON body), what reads show, the caller recorded when a body names nobody,
``GET /audit`` and who may see which of its records."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.support.nodes import Client, NodeProcess, operator_headers

pytestmark = pytest.mark.integration

CALLBACK = "http://127.0.0.1:9/callback"  # the discard port: nothing answers
YEARLY = "0 0 1 1 *"


@pytest.fixture(scope="module")
def operator(node: NodeProcess) -> Iterator[Client]:
    client = Client(node.api, operator_headers())
    yield client
    client.close()


def credential(node: NodeProcess, operator: Client, **body: Any) -> tuple[Client, int]:
    made = operator.data("POST", "/credentials", 201, json=body)
    headers = {"x-api-key": made["api_key"], "x-secret-key": made["api_secret"]}
    return Client(node.api, headers), int(made["id"])


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def records(client: Client, **params: Any) -> dict[str, Any]:
    page: dict[str, Any] = client.data("GET", "/audit", params={"limit": 1000, **params})
    return page


def test_the_official_clients_bodies_are_recorded_and_shown(
    node: NodeProcess, operator: Client
) -> None:
    """``ProjectRequestBody``, ``ProjectUpdateRequestBody``, ``JobRequestBody``
    (with a callback URL), ``JobUpdateRequestBody`` and the delete bodies, as
    the client serializes them (camelCase, a JSON body on DELETE)."""
    client, credential_id = credential(node, operator, scopes=["write", "read"])
    try:
        project = client.data(
            "POST",
            "/projects",
            201,
            json={"name": "audited", "description": "d", "createdBy": "ana"},
        )
        assert project["created_by"] == "ana" and project["modified_by"] is None
        changed = client.data(
            "PUT",
            f"/projects/{project['id']}",
            json={"description": "e", "modifiedBy": "bo"},
        )
        assert changed["modified_by"] == "bo" and changed["created_by"] == "ana"
        jobs = client.data(
            "POST",
            "/jobs",
            201,
            json=[
                {
                    "projectId": project["id"],
                    "spec": YEARLY,
                    "callbackUrl": CALLBACK,
                    "name": "nightly",
                    "createdBy": "cy",
                },
                {"project_id": project["id"], "spec": YEARLY, "callback_url": CALLBACK},
            ],
        )
        job_id, other = jobs[0]["id"], jobs[1]["id"]
        assert jobs[0]["created_by"] == "cy"
        updated = client.data(
            "PUT", f"/jobs/{job_id}", json={"modifiedBy": "dee", "spec": "0 3 * * *"}
        )
        assert updated["modified_by"] == "dee" and updated["created_by"] == "cy"
        shown = client.data("GET", f"/jobs/{job_id}")
        assert (shown["created_by"], shown["modified_by"]) == ("cy", "dee")
        listed = client.data("GET", "/jobs", params={"projectId": project["id"]})["jobs"]
        assert [(j["id"], j["created_by"]) for j in listed] == [
            (job_id, "cy"),
            (other, f"credential:{credential_id}"),  # the item named nobody: the caller
        ]

        before = time.time()
        gone = client.data("DELETE", f"/jobs/{job_id}", json={"deletedBy": "eve"})
        assert gone == {"id": job_id, "deleted": True}
        client.data("DELETE", f"/jobs/{other}", json={"deleted_by": "fay"})
        client.data("DELETE", f"/projects/{project['id']}", json={"deletedBy": "gus"})
        after = time.time()
    finally:
        client.close()
    page = records(operator, projectId=project["id"])
    assert page["total"] == 3
    newest, middle, oldest = page["records"]  # newest first
    assert (newest["kind"], newest["object_id"], newest["name"], newest["by"]) == (
        "project",
        project["id"],
        "audited",
        "gus",
    )
    assert (middle["kind"], middle["object_id"], middle["by"]) == ("job", other, "fay")
    # A body may name anyone, even the operator; the record also says who asked.
    assert {r["principal"] for r in page["records"]} == {f"credential:{credential_id}"}
    assert oldest == {
        "id": oldest["id"],
        "action": "deleted",
        "kind": "job",
        "object_id": job_id,
        "name": "nightly",
        "project_id": project["id"],
        "by": "eve",
        "principal": f"credential:{credential_id}",  # who asked, whatever the body named
        "at": oldest["at"],
        "detail": {"spec": "0 3 * * *", "callback_url": CALLBACK},
    }
    assert before <= unix(oldest["at"]) <= unix(newest["at"]) <= after
    jobs_only = records(operator, projectId=project["id"], kind="job")
    assert [r["object_id"] for r in jobs_only["records"]] == [other, job_id]


def test_without_a_name_in_the_body_the_caller_is_recorded(
    node: NodeProcess, operator: Client
) -> None:
    client, credential_id = credential(node, operator)
    me = f"credential:{credential_id}"
    try:
        project = client.data("POST", "/projects", 201, json={"name": "by-caller"})
        assert project["created_by"] == me
        job = client.data(
            "POST",
            "/jobs",
            201,
            json={"project_id": project["id"], "spec": YEARLY, "callback_url": CALLBACK},
        )
        assert job["created_by"] == me
        paused = client.data("POST", f"/jobs/{job['id']}/pause")
        assert paused["modified_by"] == me
        # An empty name is no name.
        renamed = client.data(
            "PATCH", f"/projects/{project['id']}", json={"name": "by-caller-2", "modifiedBy": ""}
        )
        assert renamed["modified_by"] == me
        client.data("DELETE", f"/jobs/{job['id']}")  # no body
    finally:
        client.close()
    operators_job = operator.data(
        "POST",
        "/jobs",
        201,
        json={"project_id": project["id"], "spec": YEARLY, "callback_url": CALLBACK},
    )
    assert operators_job["created_by"] == "operator"
    operator.data("DELETE", f"/jobs/{operators_job['id']}")
    operator.data("DELETE", f"/projects/{project['id']}")
    by = [(r["kind"], r["by"]) for r in records(operator, projectId=project["id"])["records"]]
    assert by == [("project", "operator"), ("job", "operator"), ("job", me)]


def test_credentials_record_who_made_changed_and_deleted_them(
    node: NodeProcess, operator: Client
) -> None:
    made = operator.data(
        "POST",
        "/credentials",
        201,
        json={"createdBy": "ops", "description": "ci", "archived": False, "scopes": ["read"]},
    )
    assert made["created_by"] == "ops" and made["modified_by"] is None
    restored = operator.data(
        "PUT", f"/credentials/{made['id']}", json={"modifiedBy": "ops2", "archived": False}
    )
    assert restored["modified_by"] == "ops2"
    archived = operator.data(
        "POST", f"/credentials/{made['id']}/archive", json={"archivedBy": "ops3"}
    )
    assert archived["archived"] is True and archived["modified_by"] == "ops3"
    operator.data("DELETE", f"/credentials/{made['id']}", json={"deletedBy": "ops4"})
    found = [
        r for r in records(operator, kind="credential")["records"] if r["object_id"] == made["id"]
    ]
    assert found == [
        {
            "id": found[0]["id"],
            "action": "deleted",
            "kind": "credential",
            "object_id": made["id"],
            "name": "ci",
            "project_id": None,
            "by": "ops4",
            "principal": "operator",
            "at": found[0]["at"],
            "detail": {"api_key": made["api_key"]},
        }
    ]


def test_a_limited_credential_sees_only_its_projects_records(
    node: NodeProcess, operator: Client
) -> None:
    """Another tenant's records (and credentials', which belong to no project)
    are neither listed nor counted, whatever the filters."""
    mine = operator.data("POST", "/projects", 201, json={"name": "tenant-a"})["id"]
    theirs = operator.data("POST", "/projects", 201, json={"name": "tenant-b"})["id"]
    for project in (mine, theirs):
        job = operator.data(
            "POST",
            "/jobs",
            201,
            json={"project_id": project, "spec": YEARLY, "callback_url": CALLBACK},
        )
        operator.data("DELETE", f"/jobs/{job['id']}", json={"deletedBy": f"admin-of-{project}"})
    spare = operator.data("POST", "/credentials", 201, json={})
    operator.data("DELETE", f"/credentials/{spare['id']}")
    limited, _ = credential(node, operator, scopes=["read"], projects=[mine])
    everywhere, _ = credential(node, operator, scopes=["read"])
    try:
        page = records(limited)
        assert {r["project_id"] for r in page["records"]} == {mine}
        assert page["total"] == len(page["records"]) == 1
        assert page["records"][0]["by"] == f"admin-of-{mine}"
        assert records(limited, projectId=theirs) == {
            "total": 0,
            "offset": 0,
            "limit": 1000,
            "records": [],
        }
        assert records(limited, kind="credential")["total"] == 0
        # A credential of every project sees every project's records, and
        # still no credential's (only operators see those).
        projects = {r["project_id"] for r in records(everywhere)["records"]}
        assert {mine, theirs} <= projects and None not in projects
        assert records(everywhere, kind="credential")["total"] == 0
    finally:
        limited.close()
        everywhere.close()
    assert any(
        r["object_id"] == spare["id"] for r in records(operator, kind="credential")["records"]
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"deletedBy": "x" * 256}, "deleted_by"),
        ({"deletedBy": "bad\u202ename"}, "deleted_by"),
        ({"deletedBy": 7}, "deleted_by"),
        ({"removedBy": "x"}, "removedBy"),
        ([], "body"),
    ],
)
def test_a_bad_delete_body_is_refused_naming_the_field_and_deletes_nothing(
    operator: Client, body: Any, field: str
) -> None:
    project = operator.data(
        "POST", "/projects", 201, json={"name": f"kept-{field}-{len(str(body))}"}
    )
    answer = operator.call("DELETE", f"/projects/{project['id']}", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["field"] == field
    assert operator.data("GET", f"/projects/{project['id']}")["id"] == project["id"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/projects", {"name": "n", "createdBy": "y" * 256}, "created_by"),
        ("/projects", {"name": "n", "createdBy": "a\x1bb"}, "created_by"),
        ("/credentials", {"createdBy": "a\x07b"}, "created_by"),
    ],
)
def test_a_bad_created_by_is_refused_naming_it(
    operator: Client, path: str, body: dict[str, Any], field: str
) -> None:
    answer = operator.call("POST", path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["field"] == field


def test_an_unknown_kind_is_refused_naming_it(operator: Client) -> None:
    answer = operator.call("GET", "/audit", params={"kind": "widget"})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "kind"


def test_executors_record_who_made_changed_and_deleted_them(
    node: NodeProcess, operator: Client
) -> None:
    body = {"name": "audited", "type": "webhook_url", "webhookUrl": CALLBACK}
    made = operator.data("POST", "/executors", 201, json={**body, "createdBy": "ops"})
    assert made["created_by"] == "ops" and made["modified_by"] is None
    changed = operator.data("PUT", f"/executors/{made['id']}", json={"name": "audited v2"})
    assert changed["modified_by"] == "operator"  # no name in the body: the caller
    refused = operator.call("DELETE", f"/executors/{made['id'] + 10_000}", json={"deletedBy": "x"})
    assert refused.status_code == 404
    operator.data("DELETE", f"/executors/{made['id']}", json={"deletedBy": "ops4"})
    found = [
        r for r in records(operator, kind="executor")["records"] if r["object_id"] == made["id"]
    ]
    assert found == [
        {
            "id": found[0]["id"],
            "action": "deleted",
            "kind": "executor",
            "object_id": made["id"],
            "name": "audited v2",
            "project_id": None,
            "by": "ops4",
            "principal": "operator",
            "at": found[0]["at"],
            "detail": {"webhook_url": CALLBACK, "webhook_method": "POST"},
        }
    ]
    # Without a body the caller is recorded.
    other = operator.data("POST", "/executors", 201, json=body)
    assert other["created_by"] == "operator"
    operator.data("DELETE", f"/executors/{other['id']}")
    (mine,) = [
        r for r in records(operator, kind="executor")["records"] if r["object_id"] == other["id"]
    ]
    assert mine["by"] == "operator"
