"""On one real node: runs decided ahead of their slot (``FireAheadSeconds``).

A run is recorded ``dispatched`` before its slot and its callback reaches the
receiver at the slot, not before; a job paused in between is not called, and
its run is recorded ``skipped`` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.nodes import Client, NodeProcess, running_node, wait_until
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.integration

AHEAD = 6
"""Wide enough that a pause sent after the decision lands before the slot."""
PERIOD = 8


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(
        tmp_path_factory.mktemp("node-ahead"),
        extra_env={"SCHEDULER0_FIRE_AHEAD_SECONDS": str(AHEAD)},
    ) as node:
        yield node


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningReceiver]:
    with run_receiver(tmp_path_factory.mktemp("receiver")) as receiver:
        yield receiver


def executions(client: Client, job_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.data(
        "GET", f"/jobs/{job_id}/executions", params={"limit": 100}
    )["executions"]
    return rows


def held_run(client: Client, job_id: int) -> dict[str, Any] | None:
    """The job's run decided and not yet due, if there is one."""
    now = time.time()
    for row in executions(client, job_id):
        if row["state"] == "dispatched" and row["slot"] > now:
            return row
    return None


def test_a_run_is_decided_ahead_sent_at_its_slot_and_not_sent_if_paused_before_it(
    client: Client, receiver: RunningReceiver
) -> None:
    project = client.data("POST", "/projects", 201, json={"name": "ahead"})["id"]

    def job(path: str) -> int:
        body = {
            "project_id": project,
            "spec": f"@every {PERIOD}s",
            "callback_url": f"{receiver.url}/{path}",
        }
        return int(client.data("POST", "/jobs", 201, json=body)["id"])

    job("kept")
    paused = job("paused")
    run = wait_until(lambda: held_run(client, paused), PERIOD + 5, what="a run decided ahead")
    client.call("POST", f"/jobs/{paused}/pause").raise_for_status()
    assert time.time() < run["slot"], "the pause must land before the slot for this test"
    skipped_id = run["execution_id"]

    def settled() -> dict[str, Any] | None:
        rows = {row["execution_id"]: row for row in executions(client, paused)}
        row = rows.get(skipped_id)
        return row if row is not None and row["state"] != "dispatched" else None

    row = wait_until(settled, AHEAD + 10, what="the held run of the paused job recorded")
    assert (row["state"], row["error"]) == ("skipped", "job paused before its slot")
    counts = client.data("GET", f"/jobs/{paused}")
    assert (counts["success_count"], counts["failed_count"]) == (0, 0)

    # The other job's runs arrive at their slot, never before it (on this
    # shared box within a few seconds of it), each once.
    def two_delivered() -> list[dict[str, Any]] | None:
        records = [r for r in receiver.records() if r["path"] == "/kept"]
        return records if len(records) >= 2 else None

    records = wait_until(two_delivered, 2 * PERIOD + AHEAD + 5, what="two runs of the other job")
    for record in records:
        slot = int(record["execution_id"].rsplit("-", 1)[1])
        assert slot <= record["t"] < slot + 5, (record, slot)
    ids = [r["execution_id"] for r in records]
    assert len(ids) == len(set(ids))
    assert all(r["path"] != "/paused" for r in receiver.records())
