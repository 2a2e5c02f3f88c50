"""Bench: what a raft snapshot costs, by part: pin, copy, seal, fsync.

Only the pin (``pin_snapshot``: a read transaction on a new connection) runs
on the raft thread and holds up apply; the rest (``PinnedSnapshot.write``)
runs on the snapshot's own thread. On a fresh state machine (real SQLite
file, no raft) holding ``--jobs`` jobs (and ``--executions`` execution rows),
it takes ``--runs`` snapshots into the
data directory's file system and times each part: the pin, the SQLite online
backup
(what a snapshot cost before the seal), the seal (one read of the file and
its SHA-256), the fsync that FlushBeforeAck adds, and the check at load.
Reports medians; writes ``bench/results/<--out>.json`` (default
``durability_snapshot_cost``).

    python bench/snapshot_cost.py [--jobs 100000] [--executions 200000] [--runs 5] [--out NAME]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common


def main(argv: list[str] | None = None) -> int:
    from scheduler0.daemon.state import commands as c
    from scheduler0.daemon.state import machine as machine_module
    from scheduler0.daemon.state.machine import StateMachine
    from scheduler0.daemon.state.snapshot_file import fsync_file, verify_snapshot

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--executions", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="durability_snapshot_cost")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="s0-snapshot-cost-"))
    machine = StateMachine(workdir / "state.db")
    index = 0

    def apply(command: Any) -> None:
        nonlocal index
        index += 1
        result = machine.apply(c.encode(command), index)
        assert "ok" in result, result

    seal_times: list[float] = []
    real_seal = machine_module.seal_snapshot

    def timed_seal(path: str) -> None:
        started = time.perf_counter()
        real_seal(path)
        seal_times.append(time.perf_counter() - started)

    machine_module.seal_snapshot = timed_seal  # type: ignore[assignment]
    try:
        common.seed_replica(apply, args.jobs, spec="@every 1s", timezone="UTC")
        slot = 1_795_000_000
        per_round = min(args.jobs, 10_000)
        for r in range(args.executions // per_round):
            slot += 1
            first = 1 + (r * per_round) % args.jobs
            ids = list(range(first, first + per_round))
            apply(c.SlotsFired(now=slot + 0.1, node_id=1, epoch=1, fires=[[j, slot] for j in ids]))
            apply(
                c.ResultsRecorded(
                    now=slot + 0.5, node_id=1, groups=[[slot, "success", 200, 1, 12, None, ids]]
                )
            )
        totals, pins, fsyncs, verifies, sizes = [], [], [], [], []
        for run in range(args.runs):
            path = workdir / f"raft.snapshot.{run}"
            started = time.perf_counter()
            pinned = machine.pin_snapshot(("raft", run))
            pins.append(time.perf_counter() - started)
            pinned.write(str(path))
            totals.append(time.perf_counter() - started)
            started = time.perf_counter()
            fsync_file(path)
            fsyncs.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert verify_snapshot(path)
            verifies.append(time.perf_counter() - started)
            sizes.append(os.path.getsize(path))
            path.unlink()
    finally:
        machine_module.seal_snapshot = real_seal  # type: ignore[assignment]
        machine.close()
        shutil.rmtree(workdir, ignore_errors=True)

    copy = [t - s - p for t, s, p in zip(totals, seal_times, pins, strict=True)]
    med = {
        "snapshot_mb": common.median(sizes) / 1e6,
        "pin_ms": common.median(pins) * 1000,
        "copy_ms": common.median(copy) * 1000,
        "seal_ms": common.median(seal_times) * 1000,
        "fsync_ms": common.median(fsyncs) * 1000,
        "verify_at_load_ms": common.median(verifies) * 1000,
    }
    med["raft_thread_ms"] = med["pin_ms"]
    med["beside_off_ms"] = med["copy_ms"] + med["seal_ms"]
    med["beside_on_ms"] = med["beside_off_ms"] + med["fsync_ms"]
    print(common.table(list(med), [[round(v, 2) for v in med.values()]]))
    path = common.write_result(
        args.out,
        {
            "bench": "snapshot_cost",
            "command": "python bench/snapshot_cost.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "medians": med,
            "runs": {
                "total": totals,
                "pin": pins,
                "seal": seal_times,
                "fsync": fsyncs,
                "verify": verifies,
            },
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
