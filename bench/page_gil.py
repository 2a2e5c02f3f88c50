"""Bench: how long building one page of 10,000 jobs keeps another thread waiting.

In one process, with the node's GIL switch interval: a thread ticks every
1 ms (what the event loop does between its I/O waits) while the main thread
presents 10,000 job rows and encodes the answer, either in one
``orjson.dumps`` of the whole page (the code before) or with
``views.page_out`` (rows presented and encoded ``PAGE_SLICE`` at a time).
Reported per run: the page's time and the ticker's longest gap; both ways
must give the same bytes. No node, no SQLite: only the part that holds the
GIL.

    python -m bench.page_gil --repeats 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root

from scheduler0.daemon.api import views
from scheduler0.daemon.serve import GIL_SWITCH_SECONDS
from scheduler0.daemon.state.queries import Page


def job_rows(n: int) -> list[dict[str, Any]]:
    """Rows with the columns ``views.job_out`` reads (next run kept)."""
    return [
        {
            "id": i,
            "project_id": 2,
            "spec": f"{i % 60} {i % 24} 29 2 mon#5",
            "timezone": "Asia/Kolkata",
            "data": orjson.dumps({"n": i}).decode(),
            "callback_url": "http://127.0.0.1:3333/cb",
            "execution_type": "http",
            "paused": 0,
            "status_note": None,
            "last_fired_slot": None,
            "next_run": 1_900_000_000,
            "last_state": None,
            "last_status_code": None,
            "fired_count": 0,
            "success_count": 0,
            "failed_count": 0,
            "missed_count": 0,
            "created_at": 1_796_220_000.0,
            "updated_at": 1_796_220_000.0,
            "name": None,
            "labels": None,
            "policy": None,
            "anchor": 1_796_220_000,
            "not_before": 1_796_220_000,
        }
        for i in range(n)
    ]


def longest_gap(build: Callable[[], bytes]) -> tuple[float, float, bytes]:
    """(seconds ``build`` took, the ticker's longest gap meanwhile, its bytes)."""
    gaps: list[float] = []
    done = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    time.sleep(0.05)
    started = time.perf_counter()
    body = build()
    took = time.perf_counter() - started
    done.set()
    ticker.join(timeout=5)
    return took, max(gaps), body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args(argv)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    rows = job_rows(args.rows)
    page = Page(len(rows), 0, len(rows), rows)  # type: ignore[arg-type]  # dicts stand for rows

    def one_call() -> bytes:
        data = {"total": page.total, "offset": 0, "limit": page.limit}
        data["jobs"] = [views.job_out(row) for row in rows]  # type: ignore[assignment]
        return orjson.dumps({"success": True, "data": data})

    def slices() -> bytes:
        return orjson.dumps({"success": True, "data": views.page_out(page, "jobs", views.job_out)})

    figures: dict[str, list[tuple[float, float]]] = {"one call": [], "slices": []}
    for _ in range(args.repeats):
        took_a, gap_a, body_a = longest_gap(one_call)
        took_b, gap_b, body_b = longest_gap(slices)
        if body_a != body_b:
            raise SystemExit("the two ways gave different bytes")
        figures["one call"].append((took_a, gap_a))
        figures["slices"].append((took_b, gap_b))
    for name, runs in figures.items():
        took = statistics.median(t for t, _ in runs) * 1000
        gaps = sorted(g * 1000 for _, g in runs)
        print(
            f"{name:9s} page median {took:5.0f} ms; ticker's longest gap median"
            f" {statistics.median(gaps):5.1f} ms (runs: {', '.join(f'{g:.0f}' for g in gaps)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
