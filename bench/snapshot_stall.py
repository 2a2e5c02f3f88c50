"""Bench: how long a snapshot's write-back holds another file's fsync on the same disk.

With FlushBeforeAck every node fdatasyncs its raft journal before it acks an
entry, and a snapshot of its own (hundreds of MB at a million jobs) is
written beside it on the same disk and fsynced. This bench holds a state
machine of about ``--mb`` MB (jobs, then execution rows added in SQL), and
while a "journal" thread appends 4 KiB and fdatasyncs it every 5 ms in the
same directory, it writes snapshots the way a node does (``pin_snapshot``,
``PinnedSnapshot.write``, then an fsync of the file): ``--runs`` times each,
paced (the file flushed after every backup step) and unpaced (one fsync at
the end), alternating. Reports, per mode, the medians over the runs of the
journal's fdatasync p99 and max while the snapshot was written, and of the
snapshot's seconds. Writes ``bench/results/<--name>.json``.

    python bench/snapshot_stall.py [--mb 280] [--runs 3] [--name snapshot_stall]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as common


class Journal:
    """Appends 4 KiB and fdatasyncs it every 5 ms, timing each fdatasync."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (start, seconds)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        block = b"j" * 4096
        while not self._stop.wait(0.005):
            started = time.monotonic()
            os.write(self._fd, block)
            os.fdatasync(self._fd)
            self.latencies.append((started, time.monotonic() - started))

    def between(self, start: float, end: float) -> list[float]:
        return sorted(s for t, s in self.latencies if start <= t <= end)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        os.close(self._fd)


def main(argv: list[str] | None = None) -> int:
    from scheduler0.daemon.state import commands as c
    from scheduler0.daemon.state.machine import StateMachine
    from scheduler0.daemon.state.snapshot_file import fsync_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=280)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--name", default="snapshot_stall")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="s0-stall-"))
    machine = StateMachine(workdir / "state.db")
    journal: Journal | None = None
    try:
        machine.apply(c.encode(c.ProjectCreated(now=1.0, name="p", description="", signing_secret="s")))
        job = {
            "project_id": 1,
            "spec": "@every 1m",
            "timezone": "UTC",
            "data": '{"jobId":1}',
            "callback_url": "http://127.0.0.1:9/callback",
            "anchor": 1_795_000_000,
        }
        for _ in range(100):
            machine.apply(c.encode(c.JobsCreated(now=1.0, jobs=[job] * 1000)))
        db = machine._conn  # noqa: SLF001 - the bench fills the file, not a replicated state
        rows = 0
        while os.path.getsize(workdir / "state.db") < args.mb * 1_000_000:
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)"
                " INSERT INTO executions (job_id, project_id, slot, state, created_at, updated_at)"
                " SELECT 1 + (i % 100000), 1, ? + i / 100000, 'success', 1.0, 1.0 FROM n",
                (2_000_000_000 + rows,),
            )
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            rows += 200_000
        size_mb = os.path.getsize(workdir / "state.db") / 1e6
        journal = Journal(workdir / "raft.journal")
        time.sleep(1.0)
        runs: dict[str, list[dict[str, float]]] = {"unpaced": [], "paced": []}
        for _ in range(args.runs):
            for mode in ("unpaced", "paced"):
                path = str(workdir / "raft.snapshot.tmp")
                started = time.monotonic()
                machine.pin_snapshot(("data",)).write(path, paced=mode == "paced")
                fsync_file(path)
                ended = time.monotonic()
                during = journal.between(started, ended)
                runs[mode].append(
                    {
                        "snapshot_s": ended - started,
                        "journal_fdatasync_p99_ms": common.percentile(during, 99) * 1000,
                        "journal_fdatasync_max_ms": max(during) * 1000,
                        "journal_fdatasyncs": len(during),
                    }
                )
                os.remove(path)
                time.sleep(2.0)  # the disk settles between two snapshots
        summary = {
            mode: {
                key: statistics.median(run[key] for run in each)
                for key in ("snapshot_s", "journal_fdatasync_p99_ms", "journal_fdatasync_max_ms")
            }
            for mode, each in runs.items()
        }
    finally:
        if journal is not None:
            journal.close()
        machine.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        common.table(
            ["mode", "state MB", "snapshot s", "journal fdatasync p99 ms", "max ms"],
            [
                [
                    mode,
                    size_mb,
                    summary[mode]["snapshot_s"],
                    summary[mode]["journal_fdatasync_p99_ms"],
                    summary[mode]["journal_fdatasync_max_ms"],
                ]
                for mode in ("unpaced", "paced")
            ],
        )
    )
    result: dict[str, Any] = {
        "bench": "snapshot_stall",
        "command": "python bench/snapshot_stall.py " + " ".join(sys.argv[1:]),
        "params": {k: str(v) for k, v in vars(args).items()},
        "state_mb": size_mb,
        "runs": runs,
        "medians": summary,
    }
    print(f"wrote {common.write_result(args.name, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
