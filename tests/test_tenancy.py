"""Scoped credentials on a real node, beyond the permission matrix
(``test_permissions.py``): the body the official clients send, what a
credential shows of itself, and a rotated signing secret signing the next
callbacks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from scheduler0 import signing
from tests.support.nodes import Client, NodeProcess, operator_headers, wait_until
from tests.support.receiver import run_receiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def operator(node: NodeProcess) -> Iterator[Client]:
    client = Client(node.api, operator_headers())
    yield client
    client.close()


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_the_official_clients_credential_body_is_accepted(operator: Client) -> None:
    """``CredentialCreateRequestBody`` of the ``scheduler0`` client, as it
    serializes it (camelCase, ``archived`` always sent)."""
    before = time.time()
    made = operator.data(
        "POST",
        "/credentials",
        201,
        json={
            "createdBy": "billing-deploy",
            "scopes": ["execute", "read"],
            "archived": False,
            "expiresInSeconds": 3600,
        },
    )
    assert made["scopes"] == ["read", "execute"]  # each once, in the documented order
    assert made["projects"] == [] and made["created_by"] == "billing-deploy"
    assert before + 3600 <= unix(made["expires_at"]) <= time.time() + 3600
    assert made["archived"] is False and made["api_secret"]
    shown = operator.data("GET", f"/credentials/{made['id']}")
    assert "api_secret" not in shown
    assert {k: shown[k] for k in ("scopes", "projects", "expires_at")} == {
        k: made[k] for k in ("scopes", "projects", "expires_at")
    }


def test_a_credential_made_without_scopes_may_do_everything_everywhere(
    operator: Client,
) -> None:
    made = operator.data("POST", "/credentials", 201, json={})
    assert made["scopes"] == ["read", "write", "execute", "admin"]
    assert made["projects"] == [] and made["expires_at"] is None


def test_a_limited_credential_is_created_with_its_projects_once_each(operator: Client) -> None:
    project = operator.data("POST", "/projects", 201, json={"name": "limits"})["id"]
    made = operator.data(
        "POST",
        "/credentials",
        201,
        json={"scopes": ["read"], "projects": [project, project], "expiresAt": "2100-01-01"},
    )
    assert made["projects"] == [project] and made["scopes"] == ["read"]
    assert unix(made["expires_at"]) == unix("2100-01-01T00:00:00Z")
    listed = operator.data("GET", "/credentials", params={"limit": 1000})["credentials"]
    assert next(c for c in listed if c["id"] == made["id"])["projects"] == [project]


def test_a_rotated_signing_secret_signs_the_next_callbacks(
    operator: Client, node: NodeProcess, tmp_path: Path
) -> None:
    created = operator.data("POST", "/credentials", 201, json={"scopes": ["admin"]})
    admin = Client(
        node.api, {"x-api-key": created["api_key"], "x-secret-key": created["api_secret"]}
    )
    try:
        project = admin.data("POST", "/projects", 201, json={"name": "rotating"})
        old = project["signing_secret"]
        with run_receiver(tmp_path, keep_requests=True) as receiver:
            job = {"project_id": project["id"], "spec": "@every 1s"}
            admin.data("POST", "/jobs", 201, json={**job, "callback_url": f"{receiver.url}/cb"})

            def signed_with(secret: str) -> bool:
                return any(
                    signing.verify(secret, body, headers, int(time.time()))
                    for _, headers, body in receiver.requests()
                )

            wait_until(lambda: signed_with(old), 30, what="a callback signed with the old secret")
            rotated = admin.data("POST", f"/projects/{project['id']}/signing-secret")
            new = rotated["signing_secret"]
            assert new and new != old
            assert admin.data("GET", f"/projects/{project['id']}")["signing_secret"] == new
            wait_until(lambda: signed_with(new), 30, what="a callback signed with the new one")
            sent_after = len(receiver.requests())
            wait_until(lambda: len(receiver.requests()) > sent_after + 1, 30, what="more callbacks")
            later = receiver.requests()[sent_after:]
            assert all(
                signing.verify(new, body, headers, int(time.time())) for _, headers, body in later
            )
    finally:
        admin.close()
