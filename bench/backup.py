"""Bench: does taking a backup hold up apply? And how long does it take?

On a fresh state machine (real SQLite file, no raft) holding ``--jobs`` jobs
and ``--executions`` execution rows, one thread applies commands the way the
raft thread does, back to back: one ``SlotsFired`` of ``--fires`` fires, then
their ``ResultsRecorded``, and so on. Meanwhile the main thread takes
``--copies`` online copies with ``copy_replica`` (what ``GET /backup`` runs),
then, for comparison, as many copies under the state machine's lock (a
backup of its own connection holding its lock, which is what a raft snapshot
cost apply before it was written beside the raft thread). It
reports the copy times and the apply latencies (median, p99, max) with no copy
running, during the online copies and during the locked copies: "apply
blocked" is how much longer the longest apply got.

    python bench/backup.py [--jobs 100000] [--executions 500000] [--fires 1000] [--copies 3]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as common


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scheduler0.daemon.state import commands as c
    from scheduler0.daemon.state.copy import copy_replica
    from scheduler0.daemon.state.machine import StateMachine

    workdir = Path(tempfile.mkdtemp(prefix="s0-backup-"))
    db_path = workdir / "state.db"
    machine = StateMachine(db_path)
    index = 1

    def apply(command: Any) -> float:
        nonlocal index
        index += 1
        encoded = c.encode(command)
        started = time.perf_counter()
        result = machine.apply(encoded, index)
        elapsed = time.perf_counter() - started
        assert "ok" in result, result
        return elapsed

    try:
        common.seed_replica(apply, args.jobs, spec="@every 1s", timezone="UTC")
        slot = 1_795_000_000

        def fire_round(ids: range) -> tuple[float, float]:
            nonlocal slot
            slot += 1
            fired = apply(
                c.SlotsFired(now=slot + 0.1, node_id=1, epoch=1, fires=[[j, slot] for j in ids])
            )
            recorded = apply(
                c.ResultsRecorded(
                    now=slot + 0.5,
                    node_id=1,
                    groups=[[slot, "success", 200, 1, 12, None, list(ids)]],
                )
            )
            return fired, recorded

        per_round = min(args.jobs, 10_000)
        for r in range(args.executions // per_round):
            first = 1 + (r * per_round) % args.jobs
            fire_round(range(first, first + per_round))
        size_mb = db_path.stat().st_size / 1e6

        samples: list[tuple[float, float]] = []  # (start, duration) of each apply
        stop = threading.Event()

        def applier() -> None:
            r = 0
            while not stop.is_set():
                first = 1 + (r * args.fires) % args.jobs
                r += 1
                started = time.perf_counter()
                fired, recorded = fire_round(range(first, first + args.fires))
                samples.append((started, fired))
                samples.append((started + fired, recorded))

        thread = threading.Thread(target=applier)
        thread.start()
        try:
            time.sleep(2.0)
            windows: dict[str, list[tuple[float, float]]] = {"online": [], "locked": []}
            copy_seconds: dict[str, list[float]] = {"online": [], "locked": []}
            for i in range(args.copies):
                began = time.perf_counter()
                copy_replica(db_path, workdir / f"online-{i}.db")
                ended = time.perf_counter()
                windows["online"].append((began, ended))
                copy_seconds["online"].append(ended - began)
                time.sleep(0.5)
            for i in range(args.copies):
                began = time.perf_counter()
                with machine._lock:  # what a raft snapshot did before it was pinned
                    dest = sqlite3.connect(str(workdir / f"locked-{i}.db"))
                    machine._conn.backup(dest)
                    dest.close()
                ended = time.perf_counter()
                windows["locked"].append((began, ended))
                copy_seconds["locked"].append(ended - began)
                time.sleep(0.5)
        finally:
            stop.set()
            thread.join()

        def overlapping(kind: str) -> list[float]:
            return [d for s, d in samples if any(s < e and s + d > b for b, e in windows[kind])]

        busy = [w for ws in windows.values() for w in ws]
        idle = [d for s, d in samples if not any(s < e and s + d > b for b, e in busy)]
        out: dict[str, Any] = {"db_mb": round(size_mb, 1), "rows": {}}
        for name, values in (
            ("no copy", idle),
            ("online copy", overlapping("online")),
            ("copy under lock", overlapping("locked")),
        ):
            out["rows"][name] = {
                "applies": len(values),
                "median_ms": common.median(values) * 1000,
                "p99_ms": common.percentile(values, 99) * 1000,
                "max_ms": max(values, default=0.0) * 1000,
            }
        out["online_copy_s"] = common.median(copy_seconds["online"])
        out["locked_copy_s"] = common.median(copy_seconds["locked"])
        out["apply_blocked_ms"] = {
            kind: max(0.0, out["rows"][row]["max_ms"] - out["rows"]["no copy"]["max_ms"])
            for kind, row in (("online", "online copy"), ("locked", "copy under lock"))
        }
        return out
    finally:
        machine.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--executions", type=int, default=500_000)
    parser.add_argument("--fires", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=3)
    args = parser.parse_args(argv)
    result = measure(args)
    print(
        f"database {result['db_mb']} MB; online copy {result['online_copy_s']:.2f} s,"
        f" copy under the lock {result['locked_copy_s']:.2f} s (medians)"
    )
    print(
        common.table(
            ["while", "applies", "median ms", "p99 ms", "max ms"],
            [
                [name, r["applies"], r["median_ms"], r["p99_ms"], r["max_ms"]]
                for name, r in result["rows"].items()
            ],
        )
    )
    print(
        "apply blocked (longest apply minus the longest with no copy): online"
        f" {result['apply_blocked_ms']['online']:.1f} ms, under the lock"
        f" {result['apply_blocked_ms']['locked']:.1f} ms"
    )
    path = common.write_result(
        "backup",
        {
            "bench": "backup",
            "command": "python bench/backup.py " + " ".join(sys.argv[1:]),
            "params": {k: str(v) for k, v in vars(args).items()},
            **result,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
