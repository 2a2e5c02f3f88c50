"""Bench: what each index of ``executions`` costs a row inserted and deleted.

A table shaped like ``executions`` (same columns, WAL, ``synchronous=OFF``,
the writer's 16 MB cache unless ``--cache-kib``) is filled with 600,000 rows,
5,000 jobs a second for 120 seconds of slots; then six rounds each insert 20
more seconds of rows (100,000) in one transaction and delete as many of the
oldest by id in another, as retention does. Reported per variant: µs a row
inserted (Python's ``executemany`` included) and deleted.

Variants: ``table`` alone; ``+key`` the ``UNIQUE (job_id, slot)`` key;
``+second`` the run-second index; ``+both`` both (what a replica has, less
its partial indexes, which cost nothing measurable here).

    python bench/index_cost.py [--cache-kib 16000] [--name index_cost]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

JOBS = 10_000
"""Job ids 1 to JOBS, every other one fired each second (5,000 a second)."""
FIRST_SLOT = 1_795_000_000
COLUMNS = (
    "job_id, project_id, slot, state, node_id, epoch, attempts, status_code, latency_ms,"
    " error, created_at, updated_at"
)
VARIANTS = {"table": (False, False), "+key": (True, False), "+second": (False, True)}
VARIANTS["+both"] = (True, True)


def _rows(first_slot: int, seconds: int) -> list[tuple[Any, ...]]:
    return [
        (job, 1, slot, "success", 1, 1, 1, 200, 5, None, 1.0, 1.0)
        for slot in range(first_slot, first_slot + seconds)
        for job in range(1, JOBS + 1, 2)
    ]


def measure(variant: str, cache_kib: int) -> dict[str, float]:
    key, second = VARIANTS[variant]
    with tempfile.TemporaryDirectory(prefix="s0-index-") as workdir:
        db = sqlite3.connect(Path(workdir) / "x.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(f"PRAGMA cache_size=-{cache_kib}")
        db.execute(
            "CREATE TABLE executions (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " job_id INTEGER NOT NULL, project_id INTEGER NOT NULL, slot INTEGER NOT NULL,"
            " state TEXT NOT NULL, node_id INTEGER, epoch INTEGER,"
            " attempts INTEGER NOT NULL DEFAULT 0, status_code INTEGER, latency_ms INTEGER,"
            " error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL"
            + (", UNIQUE (job_id, slot))" if key else ")")
        )
        if second:
            db.execute(
                "CREATE INDEX by_second ON executions"
                "((CASE WHEN slot < 0 THEN (-slot) / 1000 ELSE slot END))"
            )
        insert = f"INSERT INTO executions ({COLUMNS}) VALUES ({', '.join('?' * 12)})"
        db.execute("BEGIN")
        db.executemany(insert, _rows(FIRST_SLOT, 120))
        db.execute("COMMIT")
        slot, inserted, deleted, rows = FIRST_SLOT + 120, 0.0, 0.0, 0
        for _ in range(6):
            batch = _rows(slot, 20)
            slot += 20
            started = time.perf_counter()
            db.execute("BEGIN")
            db.executemany(insert, batch)
            db.execute("COMMIT")
            inserted += time.perf_counter() - started
            started = time.perf_counter()
            db.execute("BEGIN")
            (top,) = db.execute("SELECT MAX(id) FROM executions").fetchone()
            db.execute("DELETE FROM executions WHERE id <= ?", (top - 600_000,))
            db.execute("COMMIT")
            deleted += time.perf_counter() - started
            rows += len(batch)
        db.close()
    return {"us_per_insert": inserted * 1e6 / rows, "us_per_delete": deleted * 1e6 / rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-kib", type=int, default=16_000)
    parser.add_argument("--name", default="index_cost")
    args = parser.parse_args(argv)
    results = []
    for variant in VARIANTS:
        figures = measure(variant, args.cache_kib)
        results.append({"variant": variant, "cache_kib": args.cache_kib, **figures})
        print(
            f"{variant:>8}: insert {figures['us_per_insert']:.2f} µs a row,"
            f" delete {figures['us_per_delete']:.2f} µs a row",
            flush=True,
        )
    path = common.write_result(args.name, {"results": results})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
