"""A job's execution policies on a real node against real receivers:
``retry`` and ``timeout_seconds`` overriding the node's settings,
``pause_after_failures`` and ``overlap``."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import Client, NodeProcess, create_credential, running_node, wait_until
from tests.support.receiver import run_receiver

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NODE_ENV = {
    "SCHEDULER0_JOB_EXECUTION_RETRY_MAX": "0",
    "SCHEDULER0_JOB_EXECUTION_RETRY_DELAY": "0",
    "SCHEDULER0_JOB_EXECUTION_TIMEOUT": "20",
}
"""The node retries nothing and waits 20 s: whatever a test sees otherwise is the job's."""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with running_node(tmp_path / "node", extra_env=NODE_ENV) as started:
        yield started


@pytest.fixture
def client(node: NodeProcess) -> Iterator[Client]:
    client = Client(node.api, create_credential(node))
    try:
        yield client
    finally:
        client.close()


def create_job(client: Client, url: str, spec: str = "@every 1h", **policy: Any) -> dict[str, Any]:
    project = client.data("POST", "/projects", 201, json={"name": f"p-{url.rsplit(':', 1)[1]}"})
    job = {"project_id": project["id"], "spec": spec, "callback_url": url, **policy}
    created: dict[str, Any] = client.data("POST", "/jobs", 201, json=job)
    return created


def finished(client: Client, job_id: int, execution_id: str, timeout: float) -> dict[str, Any]:
    """The execution, once it has a final state (bounded wait)."""

    def settled() -> dict[str, Any] | None:
        rows = client.data("GET", f"/jobs/{job_id}/executions")["executions"]
        for row in rows:
            if row["execution_id"] == execution_id and row["state"] in ("success", "failed"):
                return dict(row)
        return None

    found: dict[str, Any] = wait_until(settled, timeout, what=f"{execution_id} to finish")
    return found


# -- retry and timeout ---------------------------------------------------------------------


def test_a_jobs_retry_attempts_are_honoured(
    tmp_path: Path, node: NodeProcess, client: Client
) -> None:
    with run_receiver(tmp_path, status=500) as receiver:
        job = create_job(
            client,
            f"{receiver.url}/cb",
            retry={"attempts": 2, "initial_seconds": 0.2, "multiplier": 2.0},
        )
        assert job["retry"] == {
            "attempts": 2,
            "initial_seconds": 0.2,
            "multiplier": 2.0,
            "cap_seconds": None,
            "jitter": None,
        }
        run = client.data("POST", f"/jobs/{job['id']}/run", 202)
        execution = finished(client, job["id"], run["execution_id"], 30)
        posts = Counter(r["execution_id"] for r in receiver.records())

    assert (execution["state"], execution["attempts"], execution["status_code"]) == (
        "failed",
        3,
        500,
    )
    assert posts == {run["execution_id"]: 3}  # the node alone would have sent one


def test_a_jobs_timeout_is_honoured(tmp_path: Path, node: NodeProcess, client: Client) -> None:
    with run_receiver(tmp_path, delay=30) as receiver:
        job = create_job(client, f"{receiver.url}/cb", timeout_seconds=0.5)
        run = client.data("POST", f"/jobs/{job['id']}/run", 202)
        execution = finished(client, job["id"], run["execution_id"], 15)

    assert (execution["state"], execution["attempts"]) == ("failed", 1)
    assert execution["error"] == "timeout after 0.5s"  # the node's would be 20 s


# -- pause_after_failures --------------------------------------------------------------------


def test_pause_after_failures_pauses_with_the_reason(
    tmp_path: Path, node: NodeProcess, client: Client
) -> None:
    """A job failing every second pauses after 3 failures, shows why, and
    stops firing (a plain job on the same receiver keeps going meanwhile); a
    resume starts it again with its count cleared."""
    with run_receiver(tmp_path, status=500) as receiver:
        url = f"{receiver.url}/cb"
        job = create_job(client, url, spec="@every 1s", pause_after_failures=3)
        witness = client.data(
            "POST",
            "/jobs",
            201,
            json={"project_id": job["project_id"], "spec": "@every 1s", "callback_url": url},
        )

        def paused() -> dict[str, Any] | None:
            found: dict[str, Any] = client.data("GET", f"/jobs/{job['id']}")
            return found if found["paused"] else None

        stopped = wait_until(paused, 30, what="the job to pause itself")
        assert stopped["status"] == "paused"
        assert stopped["status_note"] == "paused after 3 consecutive failures (last: HTTP 500)"
        assert stopped["next_run_at"] is None
        # A slot accepted just before the pause applied may still report: the
        # fires stop where the pause lands, whatever that count is.
        fired_at_pause = stopped["fired_count"]
        assert fired_at_pause >= 3

        def witnessed_since(moment: float, count: int) -> bool:
            later = [r for r in receiver.records() if r["id"] == witness["id"] and r["t"] > moment]
            return len(later) >= count

        paused_at = max(r["t"] for r in receiver.records() if r["id"] == job["id"])
        wait_until(lambda: witnessed_since(paused_at, 3), 20, what="three more witness fires")
        after = [r for r in receiver.records() if r["id"] == job["id"] and r["t"] > paused_at]
        assert after == []
        assert client.data("GET", f"/jobs/{job['id']}")["fired_count"] == fired_at_pause

        resumed = client.data("POST", f"/jobs/{job['id']}/resume", 200, json={"note": "fixed"})
        assert (resumed["paused"], resumed["status_note"]) == (False, "fixed")
        again = wait_until(paused, 30, what="the job to pause itself again")

    # counted from 0 again after the resume: three new failures, not one
    assert again["status_note"] == "paused after 3 consecutive failures (last: HTTP 500)"
    assert again["failed_count"] >= stopped["failed_count"] + 3


# -- overlap ---------------------------------------------------------------------------------


def executions_of(client: Client, job_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.data(
        "GET", f"/jobs/{job_id}/executions", params={"limit": 500}
    )["executions"]
    return rows


def run_overlapping(
    tmp_path: Path, client: Client, overlap: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """A job due every second against a receiver that takes 2.5 s to answer,
    until it has 3 deliveries and 3 skipped slots: (executions, deliveries,
    receiver stats)."""
    with run_receiver(tmp_path, delay=2.5) as receiver:
        job = create_job(client, f"{receiver.url}/cb", spec="@every 1s", overlap=overlap)
        assert job["overlap"] == overlap

        def enough() -> bool:
            rows = executions_of(client, job["id"])
            skipped = [r for r in rows if r["state"] == "skipped"]
            delivered = [r for r in rows if r["state"] == "success"]
            return len(skipped) >= 3 and len(delivered) >= 3

        wait_until(enough, 40, what=f"3 deliveries and 3 skipped slots ({overlap})")
        client.data("POST", f"/jobs/{job['id']}/pause", 200)
        rows = executions_of(client, job["id"])
        records = receiver.records()
        stats = receiver.stats()
    return rows, records, stats


def test_overlap_skip_against_a_slow_receiver(tmp_path: Path, client: Client) -> None:
    rows, records, stats = run_overlapping(tmp_path, client, "skip")

    delivered = [r["execution_id"] for r in records]
    assert len(delivered) == len(set(delivered))  # none delivered twice
    assert stats["max_concurrency"] == 1  # never two executions of the job at once
    skipped = [r for r in rows if r["state"] == "skipped"]
    answered = {r["execution_id"] for r in rows if r["state"] == "success"}
    sent = answered | {r["execution_id"] for r in rows if r["state"] == "dispatched"}
    assert answered <= set(delivered) <= sent
    for row in skipped:
        assert row["execution_id"] not in delivered
        assert row["attempts"] == 0 and row["status_code"] is None
        running = row["error"].removeprefix("overlap skip: ").removesuffix(" is still in flight")
        assert running in delivered, row["error"]  # the execution it waited on was sent
        assert running < row["execution_id"]  # an earlier slot (same job id, same digits)
    # Every slot of the job is accounted for once: delivered or skipped.
    slots = sorted(r["slot"] for r in rows)
    assert slots == list(range(slots[0], slots[-1] + 1))


def test_overlap_buffer_one_against_a_slow_receiver(tmp_path: Path, client: Client) -> None:
    rows, records, stats = run_overlapping(tmp_path, client, "buffer_one")

    delivered = [r["execution_id"] for r in records]
    assert len(delivered) == len(set(delivered))
    assert stats["max_concurrency"] == 1  # the waiting one is sent after the running one
    assert delivered == sorted(delivered)  # in slot order
    for row in (r for r in rows if r["state"] == "skipped"):
        assert row["error"].startswith("overlap buffer_one: ")
        assert row["error"].endswith(" is still running and one execution already waits")
        assert row["execution_id"] not in delivered
    # Back to back: each delivery starts when the previous one's answer came.
    starts = [r["t"] for r in records]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= 2.5 for gap in gaps), gaps
