"""A consistent copy of the replica at one raft index, taken without stopping apply.

The replica is in WAL mode, so a reader never blocks the writer (apply) and
sees one committed state for as long as its read transaction lasts. The copy
reads, in one read transaction, ``meta.applied_index`` (written by every
command, or with the fires held in memory when they are written, see
``StateMachine.apply``) and the row counts, and runs SQLite's online backup
from that same connection: ``sqlite3_backup_step`` uses the read transaction
already open on its source, so the pages copied are the state at exactly that
index, whatever apply commits meanwhile. A node opens that transaction through
``StateMachine.pinned_reader`` (every held fire written first, under the
state machine's lock: up to ~0.25 s); apply does not wait for the copy
itself: it only shares the CPU and the disk, and the WAL cannot be
checkpointed past the copy's snapshot until it ends.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scheduler0.daemon.state.schema import NOT_SUCCEEDED, connect


@dataclass(frozen=True)
class ReplicaCopy:
    path: Path
    raft_index: int
    epoch: int
    counts: dict[str, int]
    pinned_at: float
    """Unix seconds at which the read transaction was opened."""
    seconds: float
    """How long the copy took (the read transaction was open that long)."""


def copy_replica(
    db_path: Path, dest: Path, pinned: Callable[[], sqlite3.Connection] | None = None
) -> ReplicaCopy:
    """Copy the replica at ``db_path`` into a new standalone SQLite file
    ``dest``: as ``pinned`` (a connection with its read transaction open)
    sees it, or else as a read transaction opened here sees it."""
    started = time.perf_counter()
    if pinned is not None:
        src = pinned()
    else:
        src = connect(db_path, writer=False)
        src.execute("BEGIN")  # a read transaction: pinned at the first read below
    try:
        meta = dict(src.execute("SELECT key, value FROM meta").fetchall())
        pinned_at = time.time()
        counts = {
            "projects": _count(src, "SELECT COUNT(*) FROM projects"),
            "credentials": _count(src, "SELECT COUNT(*) FROM credentials"),
            "jobs": _count(src, "SELECT COUNT(*) FROM jobs"),
            "executions": _count(src, "SELECT COUNT(*) FROM executions"),
            "dispatched": _count(
                src,
                f"SELECT COUNT(*) FROM executions WHERE state = 'dispatched' AND {NOT_SUCCEEDED}",
            ),
        }
        dest.unlink(missing_ok=True)
        out = sqlite3.connect(str(dest))
        try:
            out.execute("PRAGMA journal_mode=OFF")
            out.execute("PRAGMA synchronous=OFF")
            src.backup(out)  # one step, inside the read transaction opened above
            out.execute("PRAGMA journal_mode=DELETE")  # a standalone file, not WAL
        finally:
            out.close()
        src.execute("COMMIT")
    finally:
        src.close()
    return ReplicaCopy(
        path=dest,
        raft_index=int(meta.get("applied_index", 0)),
        epoch=int(meta.get("epoch", 0)),
        counts=counts,
        pinned_at=pinned_at,
        seconds=time.perf_counter() - started,
    )


def _count(conn: sqlite3.Connection, sql: str) -> int:
    value: int = conn.execute(sql).fetchone()[0]
    return value
