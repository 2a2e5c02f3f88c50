"""One tenant's receiver that never answers cannot starve another's.

One node; 40 jobs ``@every 1s`` call a healthy receiver while 400 jobs
``@every 1s`` with 20 KB of data each call a receiver that accepts and never
answers. The healthy receiver keeps getting every slot on time, the node's
memory stays bounded, and the hung jobs' fires are recorded (failed, with the
reason), not held without bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.nodes import Client, create_credential, running_node, wait_until
from tests.support.receiver import run_receiver

pytestmark = [pytest.mark.slow, pytest.mark.integration]

HEALTHY_JOBS = 40
HUNG_JOBS = 400
DATA = "x" * 20_000
RUN_SECONDS = 20


def test_a_hung_receiver_does_not_delay_a_healthy_one(tmp_path: Path) -> None:
    (tmp_path / "healthy").mkdir()
    (tmp_path / "hung").mkdir()
    env = {"SCHEDULER0_JOB_EXECUTION_TIMEOUT": "5", "SCHEDULER0_CALLBACK_QUEUE_MAX_MB": "32"}
    with (
        run_receiver(tmp_path / "healthy") as healthy,
        run_receiver(tmp_path / "hung", delay=3600) as hung,
        running_node(tmp_path / "node", extra_env=env) as node,
    ):
        client = Client(node.api, create_credential(node))
        try:
            project = client.data("POST", "/projects", 201, json={"name": "tenants"})
            before = client.data("GET", "/status")["node"]["rss_bytes"]
            good = client.data(
                "POST",
                "/jobs",
                201,
                json=[
                    {
                        "project_id": project["id"],
                        "spec": "@every 1s",
                        "callback_url": f"{healthy.url}/cb",
                    }
                    for _ in range(HEALTHY_JOBS)
                ],
            )
            client.data(
                "POST",
                "/jobs",
                201,
                json=[
                    {
                        "project_id": project["id"],
                        "spec": "@every 1s",
                        "callback_url": f"{hung.url}/cb",
                        "data": DATA,
                    }
                    for _ in range(HUNG_JOBS)
                ],
            )
            start = min(job["created_at"] for job in good)
            wait_until(
                lambda: any(r["t"] > _ts(start) + RUN_SECONDS for r in healthy.records()[-5:]),
                RUN_SECONDS + 15,
                what="the healthy receiver to run for the whole window",
            )
            status = client.data("GET", "/status")["node"]
            failed = client.data("GET", "/executions", params={"state": "failed", "limit": 5})
        finally:
            client.close()

    records = [
        (r["t"], int(r["execution_id"].split("-")[1]))
        for r in healthy.records()
        if r["status"] == 200
    ]
    window = [(t, slot) for t, slot in records if _ts(start) + 3 <= slot <= _ts(start) + 18]
    late = sorted(t - slot for t, slot in window)
    assert late, "no healthy deliveries in the window"
    slots = {slot for _, slot in window}
    assert len(window) == HEALTHY_JOBS * len(slots), "a healthy slot was missed or doubled"
    p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
    assert p99 <= 1.0, p99
    grown = status["rss_bytes"] - before
    assert grown <= 150 * 2**20, f"RSS grew {grown / 2**20:.0f} MB"
    assert failed["total"] > 0, "the hung receiver's fires were not recorded"
    worst = status["worst_destinations"][0]
    assert worst["destination"] == f"http://127.0.0.1:{hung.url.rsplit(':', 1)[1]}"
    assert worst["refused_fires"] > 0 or worst["circuit_open"]


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
