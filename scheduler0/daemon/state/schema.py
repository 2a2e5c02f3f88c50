"""The replicated SQLite schema and the connection settings every node uses.

The database is a pure function of the raft log: it is rebuilt from the last
snapshot plus the journal at every start, so it needs no fsync of its own
(``synchronous=OFF``); the raft journal is what makes writes durable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

BUCKETS = 1024
"""Jobs hash into this many buckets; the assignment maps each to one worker."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    signing_secret TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    api_key TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    archived INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    scopes TEXT,
    projects TEXT,
    expires_at REAL,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    bucket INTEGER NOT NULL,
    spec TEXT NOT NULL,
    timezone TEXT NOT NULL,
    data TEXT,
    callback_url TEXT NOT NULL,
    execution_type TEXT NOT NULL DEFAULT 'http',
    paused INTEGER NOT NULL DEFAULT 0,
    anchor INTEGER NOT NULL,
    not_before INTEGER NOT NULL,
    last_fired_slot INTEGER,
    last_state TEXT,
    last_status_code INTEGER,
    last_finished_at REAL,
    fired_count INTEGER NOT NULL DEFAULT 0,
    success_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0,
    missed_count INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_run INTEGER,
    revision INTEGER NOT NULL DEFAULT 0,
    policy TEXT,
    status_note TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_project ON jobs(project_id, id);
CREATE INDEX IF NOT EXISTS jobs_by_bucket ON jobs(bucket);
CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    state TEXT NOT NULL,
    node_id INTEGER,
    epoch INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    status_code INTEGER,
    latency_ms INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (job_id, slot)
);
CREATE INDEX IF NOT EXISTS executions_by_state ON executions(state, id);
CREATE INDEX IF NOT EXISTS executions_by_slot ON executions(slot);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    result TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys(expires_at);
CREATE TABLE IF NOT EXISTS members (
    node_id INTEGER PRIMARY KEY,
    address TEXT NOT NULL,
    raft_address TEXT NOT NULL,
    joined_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS departed_members (
    node_id INTEGER PRIMARY KEY,
    left_at REAL NOT NULL
);
"""


def execution_id(job_id: int, slot: int) -> str:
    """The deterministic id of one run: the same on every node and every retry."""
    return f"{job_id}-{slot}"


NO_NEXT_RUN = 2**62
"""A job's kept next run when it has none left (completed, or ``@manually``):
later than any real instant, so it is never due."""


def encode_policy(policy: Mapping[str, Any] | None) -> str | None:
    """A job's stored ``policy``: the JSON object of the policies set (sorted
    keys, so every node writes the same text), NULL when none is."""
    kept = {k: v for k, v in (policy or {}).items() if v is not None}
    if not kept:
        return None
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode()


def bucket_of(job_id: int) -> int:
    """Knuth's multiplicative hash: consecutive ids land in scattered buckets,
    so a batch of new jobs spreads over every worker."""
    return ((job_id * 2654435761) & 0xFFFFFFFF) % BUCKETS


def remove_database(path: Path) -> None:
    """Delete the database and its WAL files: the start of every rebuild."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


ADDED_COLUMNS = (
    ("jobs", "next_run", "INTEGER"),
    ("jobs", "revision", "INTEGER NOT NULL DEFAULT 0"),
    ("credentials", "scopes", "TEXT"),
    ("credentials", "projects", "TEXT"),
    ("credentials", "expires_at", "REAL"),
    ("credentials", "created_by", "TEXT"),
    ("jobs", "policy", "TEXT"),
    ("jobs", "status_note", "TEXT"),
    ("jobs", "consecutive_failures", "INTEGER NOT NULL DEFAULT 0"),
)
"""Columns added to a table since its first version, in order: a snapshot
written by an older node lacks them and gets them (NULL) when loaded."""


def add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, kind in ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def connect(path: Path | str, *, writer: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-16000")
    if writer:
        conn.executescript(SCHEMA)
        add_missing_columns(conn)
    else:
        conn.execute("PRAGMA query_only=ON")
    return conn
