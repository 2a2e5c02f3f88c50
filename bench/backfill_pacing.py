"""Bench: live fires' lateness on one real node while a large backfill drains.

One node, one receiver (``tests.support.receiver``). ``--live`` jobs fire every
second into ``/live``; one more every-second job is backfilled over the
``--slots`` seconds before it was created (``POST /jobs/{id}/backfill``, in
requests of at most 10,000 slots) into ``/backfill``. It reports the live
lateness (receive time - slot: p50/p99/max) over ``--baseline`` seconds before
the backfill and over the drain, the drain's length and rate, and duplicates
(execution ids received more than once: must be 0). Writes
``bench/results/backfill_pacing.json``.

    python bench/backfill_pacing.py [--live 200] [--slots 10000] [--baseline 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import percentile, table, write_result

from scheduler0.models import MAX_BACKFILL_SLOTS
from tests.support.nodes import Client, NodeProcess, create_credential, wait_until
from tests.support.receiver import RunningReceiver, run_receiver


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_of(record: dict[str, Any]) -> int:
    return int(record["execution_id"].split("-")[1])


def lateness(records: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    late = [r["t"] - slot_of(r) for r in records if r["path"] == "/live" and start <= r["t"] < end]
    return {
        "fires": len(late),
        "p50_s": percentile(late, 50),
        "p99_s": percentile(late, 99),
        "max_s": max(late, default=0.0),
    }


def run(args: argparse.Namespace, workdir: Path, receiver: RunningReceiver) -> dict[str, Any]:
    node = NodeProcess(workdir / "node").start()
    try:
        client = Client(node.api, create_credential(node))
        project = client.data("POST", "/projects", 201, json={"name": "bench"})["id"]
        live = [
            {"project_id": project, "spec": "* * * * * *", "callback_url": f"{receiver.url}/live"}
        ] * args.live
        client.data("POST", "/jobs", 201, json=live)
        backfilled = client.data(
            "POST",
            "/jobs",
            201,
            json={
                "project_id": project,
                "spec": "* * * * * *",
                "callback_url": f"{receiver.url}/backfill",
            },
        )["id"]
        end = int(time.time()) - 2
        settled = time.time() + 3
        wait_until(lambda: time.time() > settled + args.baseline, args.baseline + 10, what="base")
        baseline_end = time.time()
        queued = 0
        started = time.time()
        first = end - args.slots + 1
        while first <= end:
            last = min(end, first + MAX_BACKFILL_SLOTS - 1)
            body = {"from": rfc3339(first), "to": rfc3339(last)}
            queued += client.data("POST", f"/jobs/{backfilled}/backfill", 202, json=body)["queued"]
            first = last + 1

        def drained() -> bool:
            records = receiver.records()
            return sum(1 for r in records if r["path"] == "/backfill" and slot_of(r) <= end) >= (
                args.slots
            )

        wait_until(drained, args.slots / 50 + 60, interval=1.0, what="the backfill drained")
        finished = time.time()
        client.close()
    finally:
        node.kill()
    records = receiver.records()
    ids = Counter(r["execution_id"] for r in records)
    return {
        "live_jobs": args.live,
        "backfilled_slots": args.slots,
        "queued": queued,
        "drain_seconds": finished - started,
        "backfill_per_second": args.slots / (finished - started),
        "live_before": lateness(records, settled, baseline_end),
        "live_during": lateness(records, started, finished),
        "duplicates": sum(1 for n in ids.values() if n > 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=200)
    parser.add_argument("--slots", type=int, default=10_000)
    parser.add_argument("--baseline", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, run_receiver(Path(tmp)) as receiver:
        result = run(args, Path(tmp), receiver)
    rows = [
        [name, w["fires"], w["p50_s"], w["p99_s"], w["max_s"]]
        for name, w in (("before", result["live_before"]), ("during", result["live_during"]))
    ]
    print(table(["live lateness", "fires", "p50 s", "p99 s", "max s"], rows))
    print(
        f"backfill: {result['backfilled_slots']} slots in {result['drain_seconds']:.1f} s"
        f" ({result['backfill_per_second']:.0f}/s), duplicates {result['duplicates']}"
    )
    print(write_result("backfill_pacing", result))


if __name__ == "__main__":
    main()
