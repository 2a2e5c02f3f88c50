"""Metrics and logs of a real node: ``/metrics`` parsed with prometheus-client's
own parser agrees with what a real receiver counted; JSON log lines parse and
say who leads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.nodes import (
    Client,
    create_credential,
    operator_headers,
    running_node,
    wait_until,
)
from tests.support.receiver import run_receiver

pytestmark = [pytest.mark.slow, pytest.mark.integration]

JOBS = 20


def scrape(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/metrics", headers=headers or operator_headers(), timeout=10)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def test_metrics_count_what_the_receiver_got(tmp_path: Path) -> None:
    with (
        run_receiver(tmp_path) as receiver,
        running_node(tmp_path / "node", extra_env={"SCHEDULER0_LOG_FORMAT": "json"}) as node,
    ):
        api = Client(node.api, create_credential(node))
        try:
            project = api.data("POST", "/projects", 201, json={"name": "metrics"})
            # committed and refused by the state machine: the name is taken
            assert api.call("POST", "/projects", json={"name": "metrics"}).status_code == 409
            jobs = api.data(
                "POST",
                "/jobs",
                201,
                json=[
                    {
                        "project_id": project["id"],
                        "spec": "@every 1s",
                        "callback_url": f"{receiver.url}/cb",
                    }
                    for _ in range(JOBS)
                ],
            )
            wait_until(lambda: len(receiver.records()) >= 3 * JOBS, 30, what="deliveries")
            for job in jobs:
                api.data("POST", f"/jobs/{job['id']}/pause")

            def settled() -> bool:
                page = api.data("GET", "/executions", params={"limit": 1, "state": "dispatched"})
                return page["total"] == 0

            wait_until(settled, 20, what="every dispatched execution to settle")
            delivered = [r for r in receiver.records() if r["status"] == 200]
            succeeded = api.data("GET", "/executions", params={"limit": 1, "state": "success"})

            response = scrape(node.url)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            found = samples(response.text)
            assert value(found, "scheduler0_callbacks_total", outcome="2xx") == len(delivered)
            # runs decided ahead of their slot and not sent, their job paused before it
            cancelled = value(found, "scheduler0_fires_total", result="cancelled")
            skipped = api.data("GET", "/executions", params={"limit": 1, "state": "skipped"})
            assert skipped["total"] == cancelled
            assert (
                value(found, "scheduler0_fires_total", result="accepted")
                == len(delivered) + cancelled
            )
            assert succeeded["total"] == len(delivered)
            assert value(found, "scheduler0_delivery_lateness_seconds_count") == len(delivered)
            assert value(found, "scheduler0_jobs") == JOBS
            assert value(found, "scheduler0_raft_role", role="leader") == 1
            assert value(found, "scheduler0_queue_depth") == 0
            applied = value(found, "scheduler0_apply_duration_seconds_count", command="SlotsFired")
            assert applied >= 3
            proposed = "scheduler0_propose_duration_seconds_count"
            assert value(found, proposed, command="ProjectCreated", outcome="ok") == 1
            assert value(found, proposed, command="ProjectCreated", outcome="refused") == 1
            assert value(found, proposed, command="JobsCreated", outcome="ok") == 1
            # every SlotsFired this node applied, it proposed (one node)
            assert value(found, proposed, command="SlotsFired", outcome="ok") == applied
            names = {name for name, _ in found}
            assert all(n.startswith("scheduler0_") or n.startswith("python_") for n in names)
        finally:
            api.close()

        # A client key may not scrape: the metrics show the cluster's shape and load.
        assert scrape(node.url, {"x-api-key": "k", "x-secret-key": "s"}).status_code == 401

        lines = [
            json.loads(line)
            for line in (tmp_path / "node" / "node.log").read_text().splitlines()
            if line.startswith("{")
        ]
        assert lines, "no JSON log lines"
        assert all({"time", "level", "logger", "message", "node_id"} <= set(x) for x in lines)
        messages = [x["message"] for x in lines]
        assert any(m.startswith("this node is the leader") for m in messages), messages
        assert any(m.startswith("node 1 serving") for m in messages), messages
