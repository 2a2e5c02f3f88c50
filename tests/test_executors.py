"""Executors against a real node: the routes in the official clients' field
names, the 422s naming the field, jobs that name an executor instead of a
``callback_url``, and deliveries to a real receiver that go to the executor's
URL with its method, signed with its secret (checked with the
``standardwebhooks`` library), and follow a change of the executor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from scheduler0 import signing
from tests.support.nodes import Client, NodeProcess, create_credential, running_node, wait_until
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.integration

YEARLY = "0 0 1 1 *"  # never due while the test runs: fires come from run-now
EXECUTOR_SECRET = "an executor's own secret, 32+ characters long"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(tmp_path_factory.mktemp("executors")) as node:
        yield node


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> Iterator[Client]:
    c = Client(node.api, create_credential(node))
    yield c
    c.close()


@pytest.fixture(scope="module")
def project(client: Client) -> dict[str, Any]:
    created: dict[str, Any] = client.data("POST", "/projects", 201, json={"name": "exec"})
    return created


def executor_body(url: str = "http://127.0.0.1:9/hooks", **fields: Any) -> dict[str, Any]:
    """What the official client sends (camelCase, None fields left out)."""
    return {
        "name": "billing",
        "type": "webhook_url",
        "webhookUrl": url,
        "webhookMethod": "PUT",
        "webhookSecret": EXECUTOR_SECRET,
        "createdBy": "alice",
        **fields,
    }


def details(client: Client, method: str, path: str, body: Any) -> list[dict[str, Any]]:
    response = client.call(method, path, json=body)
    assert response.status_code == 422, response.text
    found: list[dict[str, Any]] = response.json()["error"]["details"]
    return found


# -- the routes ----------------------------------------------------------------------------


def test_an_executor_is_created_read_listed_changed_and_deleted(client: Client) -> None:
    created = client.data("POST", "/executors", 201, json=executor_body())
    executor_id = created["id"]
    assert isinstance(executor_id, int)
    expected = {
        "id": executor_id,
        "name": "billing",
        "type": "webhook_url",
        "webhook_url": "http://127.0.0.1:9/hooks",
        "webhook_method": "PUT",
        "has_webhook_secret": True,
        "jobs": 0,
        "created_by": "alice",
        "modified_by": None,
    }
    assert {k: created[k] for k in expected} == expected
    shown = client.data("GET", f"/executors/{executor_id}")
    assert {k: shown[k] for k in expected} == expected
    listed = client.data("GET", "/executors", params={"limit": 1000, "offset": 0})
    assert executor_id in [row["id"] for row in listed["executors"]]
    assert listed["total"] == len(listed["executors"])
    for read in (created, shown, *listed["executors"]):
        assert EXECUTOR_SECRET not in str(read) and "webhook_secret" not in read

    # The official client's update: name, type and modifiedBy every time.
    changed = client.data(
        "PUT",
        f"/executors/{executor_id}",
        json={
            "name": "billing v2",
            "type": "webhook_url",
            "modifiedBy": "bob",
            "webhookUrl": "http://127.0.0.1:9/v2",
            "webhookMethod": "patch",
        },
    )
    assert (changed["name"], changed["webhook_url"], changed["webhook_method"]) == (
        "billing v2",
        "http://127.0.0.1:9/v2",
        "PATCH",
    )
    assert (changed["created_by"], changed["modified_by"]) == ("alice", "bob")
    assert changed["has_webhook_secret"] is True  # kept: not given
    cleared = client.data("PATCH", f"/executors/{executor_id}", json={"webhook_secret": None})
    assert cleared["has_webhook_secret"] is False

    # The official client's delete carries a body.
    deleted = client.data(
        "DELETE", f"/executors/{executor_id}", json={"deletedBy": "carol"}, expect=200
    )
    assert deleted == {"id": executor_id, "deleted": True}
    missing = client.call("GET", f"/executors/{executor_id}")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"no executor with id {executor_id}"
    # Without a body too.
    other = client.data("POST", "/executors", 201, json=executor_body())["id"]
    assert client.data("DELETE", f"/executors/{other}") == {"id": other, "deleted": True}


@pytest.mark.parametrize("kind", ["cloud_function", "container", "local"])
def test_the_clients_other_executor_types_are_refused_naming_type(
    client: Client, kind: str
) -> None:
    assert details(client, "POST", "/executors", executor_body(type=kind)) == [
        {
            "field": "type",
            "message": f"{kind!r} executors are not supported by this server; the only type is"
            " webhook_url",
        }
    ]


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"webhookMethod": "TRACE"}, "webhook_method"),
        ({"webhookUrl": "ftp://example.test/x"}, "webhook_url"),
        ({"webhookUrl": None}, "webhook_url"),
        ({"webhookSecret": ""}, "webhook_secret"),
        ({"name": ""}, "name"),
        ({"type": "webhook"}, "type"),
        ({"region": "eu-west-1"}, "region"),
    ],
)
def test_a_bad_executor_field_is_refused_naming_it(
    client: Client, given: dict[str, Any], field: str
) -> None:
    found = details(client, "POST", "/executors", executor_body(**given))
    assert [d["field"] for d in found] == [field], found


def test_a_bad_change_of_an_executor_is_refused_naming_the_field(client: Client) -> None:
    executor_id = client.data("POST", "/executors", 201, json=executor_body())["id"]
    path = f"/executors/{executor_id}"
    assert [d["field"] for d in details(client, "PUT", path, {"type": "container"})] == ["type"]
    assert [d["field"] for d in details(client, "PUT", path, {"webhookUrl": None})] == [
        "webhook_url"
    ]
    assert [d["field"] for d in details(client, "PUT", path, {"webhookMethod": "GO"})] == [
        "webhook_method"
    ]
    client.data("DELETE", path)


# -- jobs naming an executor ---------------------------------------------------------------


def test_a_job_names_exactly_one_destination(client: Client, project: dict[str, Any]) -> None:
    executor_id = client.data("POST", "/executors", 201, json=executor_body())["id"]
    base = {"projectId": project["id"], "spec": YEARLY}
    both = {**base, "executorId": executor_id, "callbackUrl": "http://127.0.0.1:9/x"}
    assert details(client, "POST", "/jobs", [base, both]) == [
        {"field": "callback_url", "message": "Field required (or give executor_id)", "index": 0},
        {
            "field": "executor_id",
            "message": "give callback_url or executor_id, not both",
            "index": 1,
        },
    ]
    unknown = {**base, "executorId": 999_999}
    assert details(client, "POST", "/jobs", [{**base, "executorId": executor_id}, unknown]) == [
        {"field": "executor_id", "message": "no executor with id 999999", "index": 1}
    ]
    assert details(client, "POST", "/jobs", {**base, "executorId": "1"})[0]["field"] == (
        "executor_id"
    )

    job = client.data("POST", "/jobs", 201, json={**base, "executorId": executor_id})
    assert (job["executor_id"], job["callback_url"]) == (executor_id, "")
    path = f"/jobs/{job['id']}"
    assert details(
        client, "PUT", path, {"executorId": executor_id, "callbackUrl": "http://127.0.0.1:9/x"}
    ) == [{"field": "executor_id", "message": "give callback_url or executor_id, not both"}]
    assert details(client, "PUT", path, {"executorId": 999_999}) == [
        {"field": "executor_id", "message": "no executor with id 999999"}
    ]
    own = client.data("PATCH", path, json={"callbackUrl": "http://127.0.0.1:9/own"})
    assert (own["executor_id"], own["callback_url"]) == (None, "http://127.0.0.1:9/own")
    back = client.data("PATCH", path, json={"executor_id": executor_id})
    assert (back["executor_id"], back["callback_url"]) == (executor_id, "")
    client.data("DELETE", path)
    client.data("DELETE", f"/executors/{executor_id}")


def test_an_executor_in_use_is_not_deleted(client: Client, project: dict[str, Any]) -> None:
    executor_id = client.data("POST", "/executors", 201, json=executor_body())["id"]
    jobs = client.data(
        "POST",
        "/jobs",
        201,
        json=[{"project_id": project["id"], "spec": YEARLY, "executor_id": executor_id}] * 2,
    )
    assert client.data("GET", f"/executors/{executor_id}")["jobs"] == 2
    refused = client.call("DELETE", f"/executors/{executor_id}", json={"deletedBy": "x"})
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == (
        f"executor {executor_id} is used by 2 job(s); point them at another executor or"
        " callback_url, or delete them, first"
    )
    for job in jobs:
        client.data("DELETE", f"/jobs/{job['id']}")
    client.data("DELETE", f"/executors/{executor_id}")


# -- delivery ------------------------------------------------------------------------------


def run_and_receive(
    client: Client, job_id: int, receiver: RunningReceiver, already: int
) -> tuple[dict[str, Any], dict[str, str], bytes]:
    """Run the job now; the request the receiver gets for it (after ``already``)."""
    run = client.data("POST", f"/jobs/{job_id}/run", 202)

    def arrived() -> tuple[dict[str, Any], dict[str, str], bytes] | None:
        for record, headers, body in receiver.requests()[already:]:
            if run["execution_id"].encode() in body:
                return record, headers, body
        return None

    return wait_until(arrived, 30.0, interval=0.1, what=f"the callback of {run['execution_id']}")


def test_a_job_of_an_executor_fires_to_its_url_with_its_method_and_secret(
    client: Client, project: dict[str, Any], tmp_path: Path
) -> None:
    with (
        run_receiver(tmp_path, keep_requests=True) as first,
        run_receiver(tmp_path, keep_requests=True) as second,
    ):
        executor = client.data(
            "POST", "/executors", 201, json=executor_body(f"{first.url}/exec", webhookMethod="PUT")
        )
        job = client.data(
            "POST",
            "/jobs",
            201,
            json=[{"projectId": project["id"], "spec": YEARLY, "executorId": executor["id"]}],
        )[0]
        record, headers, body = run_and_receive(client, job["id"], first, 0)
        assert (record["method"], record["path"]) == ("PUT", "/exec")
        webhook = Webhook(signing.standard_webhooks_secret(EXECUTOR_SECRET))
        [item] = webhook.verify(body, headers)
        assert item["id"] == job["id"]
        assert signing.verify(EXECUTOR_SECRET, body, headers, int(time.time()))
        project_webhook = Webhook(signing.standard_webhooks_secret(project["signing_secret"]))
        with pytest.raises(WebhookVerificationError):
            project_webhook.verify(body, headers)

        # A change of the executor redirects the job's later callbacks.
        client.data(
            "PUT",
            f"/executors/{executor['id']}",
            json={
                "name": "billing",
                "type": "webhook_url",
                "modifiedBy": "bob",
                "webhookUrl": f"{second.url}/moved",
                "webhookMethod": "PATCH",
                "webhookSecret": "rotated executor secret",
            },
        )
        record, headers, body = run_and_receive(client, job["id"], second, 0)
        assert (record["method"], record["path"]) == ("PATCH", "/moved")
        rotated = Webhook(signing.standard_webhooks_secret("rotated executor secret"))
        assert [entry["id"] for entry in rotated.verify(body, headers)] == [job["id"]]
        assert len(first.requests()) == 1  # nothing more went to the old URL

        # Without a secret of its own, the project's signing secret signs.
        client.data("PATCH", f"/executors/{executor['id']}", json={"webhookSecret": None})
        record, headers, body = run_and_receive(client, job["id"], second, 1)
        assert [entry["id"] for entry in project_webhook.verify(body, headers)] == [job["id"]]
        client.data("DELETE", f"/jobs/{job['id']}")
        client.data("DELETE", f"/executors/{executor['id']}")


# -- the callback destination policy -------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"SCHEDULER0_CALLBACK_DENY_NETWORKS": "127.0.0.0/8,::1/128"}
    with running_node(tmp_path_factory.mktemp("strict"), extra_env=env) as node:
        yield node


def test_an_executor_obeys_the_destination_policy_at_create_change_and_delivery(
    strict: NodeProcess, tmp_path: Path
) -> None:
    client = Client(strict.api, create_credential(strict))
    try:
        found = details(client, "POST", "/executors", executor_body("http://127.0.0.1:3000/"))
        assert [d["field"] for d in found] == ["webhook_url"]
        assert "CallbackDenyNetworks (127.0.0.0/8)" in found[0]["message"]
        with run_receiver(tmp_path) as receiver:
            # A name is accepted as written and judged once resolved, when sent.
            url = f"http://localhost:{receiver.port}/cb"
            executor = client.data("POST", "/executors", 201, json=executor_body(url))
            path = f"/executors/{executor['id']}"
            found = details(client, "PUT", path, {"webhookUrl": "http://[::1]:3000/"})
            assert [d["field"] for d in found] == ["webhook_url"]
            project = client.data("POST", "/projects", 201, json={"name": "strict"})
            job = client.data(
                "POST",
                "/jobs",
                201,
                json={"project_id": project["id"], "spec": YEARLY, "executor_id": executor["id"]},
            )
            client.data("POST", f"/jobs/{job['id']}/run", 202)

            def finished() -> dict[str, Any] | None:
                rows = client.data("GET", f"/jobs/{job['id']}/executions")["executions"]
                done = [r for r in rows if r["state"] in ("success", "failed")]
                return done[0] if done else None

            row = wait_until(finished, 30.0, what="the run-now execution finished")
            assert row["state"] == "failed" and row["attempts"] == 1, row
            assert row["error"].startswith("destination refused: "), row
            assert "localhost resolves to" in row["error"]
            assert receiver.records() == []  # nothing reached it
    finally:
        client.close()
