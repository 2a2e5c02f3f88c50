"""Checks of exactly-once firing over receiver records and fire records."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from tests.support.nodes import Client


def all_executions(client: Client) -> list[dict[str, Any]]:
    """Every execution row, each once (by row id).

    Pages are newest first and shift while rows are added, so a row may come
    twice; reading until an empty page (never stopping at ``total``) misses none.
    """
    rows: dict[int, dict[str, Any]] = {}
    offset = 0
    while True:
        page = client.data(
            "GET",
            "/executions",
            params={"limit": 1000, "offset": offset, "consistency": "strong"},
        )["executions"]
        if not page:
            return list(rows.values())
        rows.update((e["id"], e) for e in page)
        offset += len(page)


def split_id(execution_id: str) -> tuple[int, int]:
    job_id, slot = execution_id.split("-")
    return int(job_id), int(slot)


def audit(
    records: list[dict[str, Any]],
    executions: list[dict[str, Any]],
    job_ids: set[int],
    period: int = 1,
) -> dict[str, Any]:
    """Assert the invariants and return counts for the test to judge further.

    * one fire record per (job, slot);
    * every delivered execution id has a fire record that is not ``missed``;
    * for each job, the recorded slots cover its grid with no hole between the
      first and last (each slot fired, or recorded ``missed``/``lost``).
    """
    recorded = Counter((e["job_id"], e["slot"]) for e in executions)
    assert not recorded or max(recorded.values()) == 1, recorded.most_common(3)
    states = {(e["job_id"], e["slot"]): e["state"] for e in executions}
    delivered = [r for r in records if r["status"] == 200 and r["id"] in job_ids]
    for record in delivered:
        key = split_id(record["execution_id"])
        assert states.get(key) not in ("missed",), (key, states.get(key))
    by_job: dict[int, list[int]] = defaultdict(list)
    for job_id, slot in recorded:
        if job_id in job_ids:
            by_job[job_id].append(slot)
    holes = 0
    for job_id in job_ids:
        slots = sorted(by_job[job_id])
        assert slots, f"job {job_id} never fired"
        expected = set(range(slots[0], slots[-1] + 1, period))
        holes += len(expected - set(slots))
    repeats = Counter(r["execution_id"] for r in delivered)
    state_counts = Counter(states.values())
    return {
        "holes": holes,
        "duplicate_deliveries": sum(n - 1 for n in repeats.values()),
        "delivered": len(repeats),
        "states": dict(state_counts),
        "senders": dict(Counter(r.get("node") for r in delivered)),
    }
