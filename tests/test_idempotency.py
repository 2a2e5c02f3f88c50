"""``Idempotency-Key`` on real nodes: a retry writes nothing and answers the
first result, on the same node and on another node after the leader that took
the first request was killed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.nodes import (
    Client,
    create_credential,
    running_cluster,
    running_node,
    wait_until,
)

KEY = "Idempotency-Key"


def jobs_body(project: int, count: int = 5) -> list[dict[str, Any]]:
    return [
        {"project_id": project, "spec": "@every 1h", "callback_url": "http://127.0.0.1:9/cb"}
        for _ in range(count)
    ]


@pytest.mark.integration
def test_a_keyed_create_applies_once_per_caller_and_body(tmp_path: Path) -> None:
    with running_node(tmp_path / "node") as node:
        alice = Client(node.api, create_credential(node))
        bob = Client(node.api, create_credential(node))
        try:
            first = alice.call("POST", "/projects", json={"name": "p"}, headers={KEY: "p-1"})
            again = alice.call("POST", "/projects", json={"name": "p"}, headers={KEY: "p-1"})
            assert (first.status_code, again.status_code) == (201, 201)
            assert again.json()["data"]["id"] == first.json()["data"]["id"]
            assert again.headers["Idempotent-Replayed"] == "true"
            assert "Idempotent-Replayed" not in first.headers
            project = first.json()["data"]["id"]

            body = jobs_body(project)
            made = alice.call("POST", "/jobs", json=body, headers={KEY: "jobs-1"})
            retry = alice.call("POST", "/jobs", json=body, headers={KEY: "jobs-1"})
            assert (made.status_code, retry.status_code) == (201, 201)
            assert [j["id"] for j in retry.json()["data"]] == [j["id"] for j in made.json()["data"]]
            assert retry.headers["Idempotent-Replayed"] == "true"

            other_body = alice.call("POST", "/jobs", json=body[:2], headers={KEY: "jobs-1"})
            assert other_body.status_code == 409
            assert other_body.json()["error"]["details"][0]["field"] == KEY

            # Another caller's same key is another key.
            theirs = bob.call("POST", "/jobs", json=body, headers={KEY: "jobs-1"})
            assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers

            bad = alice.call("POST", "/jobs", json=body, headers={KEY: "x" * 256})
            assert bad.status_code == 422
            assert bad.json()["error"]["details"][0]["field"] == KEY

            listed = alice.data("GET", "/jobs", params={"project_id": project})
            assert listed["total"] == 2 * len(body)
        finally:
            alice.close()
            bob.close()


@pytest.mark.cluster
@pytest.mark.slow
def test_a_retry_after_the_leader_is_killed_answers_the_first_result(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        credential = create_credential(leader)
        client = Client(leader.api, credential)
        try:
            project = client.data("POST", "/projects", 201, json={"name": "p"})["id"]
            body = jobs_body(project, 20)
            made = client.data("POST", "/jobs", 201, json=body, headers={KEY: "batch-7"})
        finally:
            client.close()
        # The client's answer may be lost with the leader: it retries elsewhere.
        leader.kill()
        new_leader = cluster.wait_leader()
        others = [n for n in cluster.nodes if n is not leader]
        follower = next(n for n in others if n is not new_leader)

        def retried() -> httpx.Response:
            with httpx.Client(headers=credential, timeout=10) as http:
                response = http.post(f"{follower.api}/jobs", json=body, headers={KEY: "batch-7"})
            response.raise_for_status()
            return response

        retry = wait_until(retried, 30, what="the retry to be answered")
        assert retry.status_code == 201
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert [j["id"] for j in retry.json()["data"]] == [j["id"] for j in made]
        check = Client(new_leader.api, credential)
        try:
            assert check.data("GET", "/jobs", params={"project_id": project})["total"] == 20
        finally:
            check.close()
