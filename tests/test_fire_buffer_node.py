"""On real nodes: fires and results held in memory (``state/fire_buffer.py``).

A node writes the fires and results it applied every ``FIRE_BUFFER_SECONDS``
(10 s), or sooner when something reads: an answer must show every fire
applied before it, and the replicas of a cluster must end with the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.state.machine import FIRE_BUFFER_SECONDS
from tests.support.nodes import (
    Client,
    NodeProcess,
    create_credential,
    running_cluster,
    wait_until,
)
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningReceiver]:
    with run_receiver(tmp_path_factory.mktemp("receiver")) as receiver:
        yield receiver


COMPARED = (
    "id",
    "execution_id",
    "state",
    "node_id",
    "attempts",
    "status_code",
    "latency_ms",
    "created_at",
    "updated_at",
)
"""What every replica must agree on, row ids included (they come in log order)."""


def delivered(receiver: RunningReceiver, path: str) -> set[str]:
    return {r["execution_id"] for r in receiver.records() if r["path"] == path}


def every_execution(client: Client, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = client.data(
            "GET", "/executions", params={**params, "limit": 500, "offset": len(rows)}
        )
        rows.extend(page["executions"])
        if len(rows) >= page["total"] or not page["executions"]:
            return rows


def test_a_read_sees_every_fire_the_node_applied_and_holds(
    client: Client, receiver: RunningReceiver
) -> None:
    """Each callback is sent after its fire was applied: a read right after
    the callbacks came (long before the node would write what it holds) lists
    every one of them, and the job counts them."""
    project = client.data("POST", "/projects", 201, json={"name": "held"})["id"]
    body = {"project_id": project, "spec": "@every 1s", "callback_url": f"{receiver.url}/held"}
    job = client.data("POST", "/jobs", 201, json=body)["id"]
    got = wait_until(
        lambda: ids if len(ids := delivered(receiver, "/held")) >= 3 else None,
        FIRE_BUFFER_SECONDS,
        what="three callbacks",
    )
    listed = {row["execution_id"]: row for row in every_execution(client, jobId=job)}
    assert got <= listed.keys()
    assert client.data("GET", f"/jobs/{job}")["fired_count"] >= len(got)


def test_three_replicas_write_the_same_fires_and_results(tmp_path: Path) -> None:
    """Every node holds and writes on its own clock; once firing stops, every
    node lists the same executions with the same outcomes."""
    with run_receiver(tmp_path) as receiver, running_cluster(tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        clients = {n.node_id: Client(n.api, create_credential(n)) for n in cluster.nodes}
        try:
            on_leader = clients[leader.node_id]
            project = on_leader.data("POST", "/projects", 201, json={"name": "same"})["id"]
            jobs = [
                on_leader.data(
                    "POST",
                    "/jobs",
                    201,
                    json={
                        "project_id": project,
                        "spec": "@every 1s",
                        "callback_url": f"{receiver.url}/same",
                    },
                )["id"]
                for _ in range(40)
            ]
            reader = clients[next(n.node_id for n in cluster.nodes if n is not leader)]

            def enough() -> bool:
                # A reader on one node only: it writes what it holds at its own
                # points of the log, the others on their clocks.
                reader.data("GET", "/executions", params={"projectId": project, "limit": 1})
                return len(delivered(receiver, "/same")) >= 400

            wait_until(enough, 40, interval=0.3, what="400 callbacks")
            for job in jobs:
                on_leader.call("POST", f"/jobs/{job}/pause").raise_for_status()

            def settled(node: NodeProcess) -> list[tuple[Any, ...]] | None:
                rows = every_execution(clients[node.node_id], projectId=project)
                if any(row["state"] == "dispatched" for row in rows):
                    return None
                return sorted(tuple(row[k] for k in COMPARED) for row in rows)

            listed = {
                node.node_id: wait_until(lambda n=node: settled(n), 30, what="no run in flight")
                for node in cluster.nodes
            }
        finally:
            for c in clients.values():
                c.close()
    first = listed[1]
    assert sum(row[2] == "success" for row in first) >= 400
    assert {row[2] for row in first} <= {"success", "skipped"}  # skipped: decided, then paused
    assert listed[2] == first
    assert listed[3] == first
