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

MANUAL = "manual"
"""``executions.trigger`` of a run-now. NULL is a run of the schedule (and every
row written before the column existed); ``models.ExecutionTrigger`` lists all."""

CATCHUP = "catchup"
"""``executions.trigger`` of a fire of a ``catchup=all`` backlog
(``SlotsFired.caught_up``)."""
BACKFILL = "backfill"
"""``executions.trigger`` of a past slot fired on request (``JobBackfilled``)."""

MANUAL_PER_SECOND = 1000
"""Manual runs (run-now) of one job one second may hold (see ``manual_slot``)."""

RUN_SECOND_SQL = f"(CASE WHEN slot < 0 THEN (-slot) / {MANUAL_PER_SECOND} ELSE slot END)"
"""``run_second`` in SQL, over an ``executions`` row: the second a run is for."""

NOT_SUCCEEDED = "state != 'success'"
"""The condition of the ``executions_not_succeeded`` index: a query that may
read its rows through it states this term word for word, which is how the
planner knows the index holds every row it asks for."""


JOB_BLOCK_BITS = 10
"""``job_blocks`` counts the jobs of each block of ``2 ** JOB_BLOCK_BITS``
consecutive ids (see below)."""

SCHEMA = f"""
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
CREATE INDEX IF NOT EXISTS executions_not_succeeded ON executions(state, id)
    WHERE {NOT_SUCCEEDED};
CREATE INDEX IF NOT EXISTS executions_by_second ON executions({RUN_SECOND_SQL});
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    result TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys(expires_at);
CREATE TABLE IF NOT EXISTS job_labels (
    job_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_labels_by_pair ON job_labels(key, value, job_id);
CREATE TABLE IF NOT EXISTS executors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT 'webhook_url',
    webhook_url TEXT NOT NULL,
    webhook_method TEXT NOT NULL DEFAULT 'POST',
    webhook_secret TEXT,
    created_by TEXT,
    modified_by TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
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
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id INTEGER NOT NULL,
    name TEXT,
    project_id INTEGER,
    actor TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_by_kind ON audit_log(kind, id);
CREATE INDEX IF NOT EXISTS audit_log_by_project ON audit_log(project_id, id);
CREATE TABLE IF NOT EXISTS project_job_counts (
    project_id INTEGER PRIMARY KEY,
    jobs INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS project_job_counts_delete AFTER DELETE ON jobs BEGIN
    UPDATE project_job_counts SET jobs = jobs - 1 WHERE project_id = OLD.project_id;
    DELETE FROM project_job_counts WHERE project_id = OLD.project_id AND jobs = 0;
END;
CREATE TRIGGER IF NOT EXISTS project_job_counts_move AFTER UPDATE OF project_id ON jobs
    WHEN NEW.project_id IS NOT OLD.project_id BEGIN
    UPDATE project_job_counts SET jobs = jobs - 1 WHERE project_id = OLD.project_id;
    DELETE FROM project_job_counts WHERE project_id = OLD.project_id AND jobs = 0;
    INSERT INTO project_job_counts (project_id, jobs) VALUES (NEW.project_id, 1)
        ON CONFLICT (project_id) DO UPDATE SET jobs = jobs + 1;
END;
CREATE TABLE IF NOT EXISTS job_blocks (
    project_id INTEGER NOT NULL,
    block INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    PRIMARY KEY (project_id, block)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS job_blocks_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_blocks SET jobs = jobs - 1
        WHERE project_id = OLD.project_id AND block = OLD.id >> {JOB_BLOCK_BITS};
    DELETE FROM job_blocks
        WHERE project_id = OLD.project_id AND block = OLD.id >> {JOB_BLOCK_BITS} AND jobs = 0;
END;
CREATE TRIGGER IF NOT EXISTS job_blocks_move AFTER UPDATE OF project_id ON jobs
    WHEN NEW.project_id IS NOT OLD.project_id BEGIN
    UPDATE job_blocks SET jobs = jobs - 1
        WHERE project_id = OLD.project_id AND block = OLD.id >> {JOB_BLOCK_BITS};
    DELETE FROM job_blocks
        WHERE project_id = OLD.project_id AND block = OLD.id >> {JOB_BLOCK_BITS} AND jobs = 0;
    INSERT INTO job_blocks (project_id, block, jobs)
        VALUES (NEW.project_id, NEW.id >> {JOB_BLOCK_BITS}, 1)
        ON CONFLICT (project_id, block) DO UPDATE SET jobs = jobs + 1;
END;
"""
"""``project_job_counts`` is derived: the number of jobs of each project that
has any (no row for a project without jobs), kept in the transaction of every
insert (by ``JobsCreated``'s handler, once per project of the batch), delete or
move (by the triggers on ``jobs``) of a job, so that
``GET /jobs`` answers its exact ``total`` without counting a project's rows.
A database without the table (a snapshot of an older node) gets it filled from
``jobs`` when loaded (``add_missing_columns``): the same rows every replica
holds, since the counts are a function of ``jobs`` alone.

``job_blocks`` is derived the same way, one level finer: the number of jobs of
each project in each block of ``2 ** JOB_BLOCK_BITS`` consecutive ids.
A page deep in a project's list in id order starts from it: summing the
blocks before the page's first row (a thousand rows at a million jobs) tells
from which id to skip the last few hundred, instead of skipping every index
entry before the page (``Queries.jobs``)."""


def manual_slot(second: int, n: int) -> int:
    """The ``slot`` key of the ``n``-th manual run of a job in ``second``.

    Scheduled, missed, backfilled and caught-up runs are keyed by their slot,
    a whole unix second (positive). A manual run is keyed by this negative
    number instead, so ``UNIQUE (job_id, slot)`` never lets one collide with
    a scheduled run of the same second, and every command that names an
    execution as ``[job_id, slot]`` names a manual run the same way. The
    second stays in the key (``run_second``), so a run's time, order and
    retention come from the key alone."""
    if not 0 <= n < MANUAL_PER_SECOND:
        raise ValueError(f"a job has at most {MANUAL_PER_SECOND} manual runs a second")
    return -(second * MANUAL_PER_SECOND + n)


def run_second(slot: int) -> int:
    """The second a run is for: its slot, or a manual run's second."""
    return -slot // MANUAL_PER_SECOND if slot < 0 else slot


def execution_id(job_id: int, slot: int) -> str:
    """The deterministic id of one run: the same on every node and every retry.

    ``<job>-<slot>`` for a run of the schedule; ``<job>-<second>-m<n>`` for
    the ``n``-th manual run of the job in that second (never the form of a
    scheduled run)."""
    if slot < 0:
        second, n = divmod(-slot, MANUAL_PER_SECOND)
        return f"{job_id}-{second}-m{n}"
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
    ("executions", "trigger", "TEXT"),
    ("jobs", "name", "TEXT"),
    ("jobs", "labels", "TEXT"),
    ("jobs", "policy", "TEXT"),
    ("jobs", "status_note", "TEXT"),
    ("jobs", "consecutive_failures", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "executor_id", "INTEGER"),
    ("projects", "created_by", "TEXT"),
    ("projects", "modified_by", "TEXT"),
    ("jobs", "created_by", "TEXT"),
    ("jobs", "modified_by", "TEXT"),
    ("credentials", "modified_by", "TEXT"),
    ("audit_log", "principal", "TEXT"),
)
"""Columns added to a table since its first version, in order: a snapshot
written by an older node lacks them and gets them (NULL) when loaded. The
``created_by``/``modified_by`` columns: NULL is "not known" (every row made
or last changed by an older entry)."""


def unsent_backfill_sql(table: str = "") -> str:
    """Backfilled runs not sent yet (of the executions aliased ``table``): the
    condition of ``executions_backfill_unsent``, which a query uses only when
    it states the condition as the index does."""
    of = f"{table}." if table else ""
    return f"{of}trigger = 'backfill' AND {of}state IN ('pending', 'lost')"


ADDED_INDEXES = f"""
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_name ON jobs(name, project_id) WHERE name IS NOT NULL;
CREATE INDEX IF NOT EXISTS executions_by_trigger ON executions(trigger) WHERE trigger IS NOT NULL;
CREATE INDEX IF NOT EXISTS executions_backfill_unsent ON executions(project_id, id)
    WHERE {unsent_backfill_sql()};
CREATE INDEX IF NOT EXISTS jobs_by_executor ON jobs(executor_id) WHERE executor_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_name_all ON jobs(name);
CREATE INDEX IF NOT EXISTS jobs_by_updated ON jobs(updated_at);
CREATE INDEX IF NOT EXISTS jobs_by_project_name ON jobs(project_id, name);
CREATE INDEX IF NOT EXISTS jobs_by_project_updated ON jobs(project_id, updated_at);
"""
"""Indexes over added columns: made once the columns exist (after ``SCHEMA``
and ``ADDED_COLUMNS``). ``jobs_by_name`` finds a name in every project and
backs its uniqueness within one (the handlers refuse a taken name first).
``executions_by_trigger`` holds only the rows with a trigger (not the
schedule's, which leave it NULL): a fire pays nothing for it.
``executions_backfill_unsent`` holds only the backfilled runs not sent yet,
by project (``unsent_backfill_sql``): each project's queue, counted and drained
in turn without reading another's.
``jobs_by_executor`` finds the jobs of an executor (a change of it, a refused
delete); a job with its own ``callback_url`` (NULL) is not in it.
``jobs_by_name_all`` and ``jobs_by_updated`` serve ``GET /jobs`` ordered by
name or by updated_at (``queries.ORDERS``) without sorting every job, and
``jobs_by_project_name`` and ``jobs_by_project_updated`` the same within one
project (``?project_id=``); a fire changes none of these columns, so none
costs a fire anything. Each ends with the row's id, so each holds every
column a page's ``ORDER BY`` (and its id tie-break) reads: a deep page skips
its offset in the index alone (``Queries.jobs``)."""


REPLACED_INDEXES = ("executions_by_slot", "jobs_by_bucket", "executions_by_state")
"""Indexes of older schemas no read uses any more, dropped from a loaded
snapshot: ``executions_by_slot`` ordered the lists by slot, which
``executions_by_second`` does now that a manual run's key is not its time
(an index costs every fire's insert on every node, so it is replaced, not
added to). ``jobs_by_bucket`` served the scheduler's reads of a bucket's jobs,
which go in id order instead (``Queries.jobs_for_scheduling``): it cost every
created job a write at one of a thousand places in the index, on every node.
``executions_by_state`` held every execution by state: each fire inserted its
row's entry and each result moved it. ``executions_not_succeeded`` holds only
the rows not ``success`` (the unsettled ones a node looks for, and failures),
so a successful result removes the fire's entry and adds none: about 2.6 µs
less of apply per fire on every node. A read of one state other than
``success`` names ``NOT_SUCCEEDED`` beside its ``state = ?`` so the planner
may use it (``Queries.unsettled``, ``Queries.executions``)."""

REPLACED_TRIGGERS = ("project_job_counts_insert", "job_blocks_insert")
"""Triggers of older schemas dropped from a loaded snapshot: the counts of
created jobs are added by ``JobsCreated``'s handler once per project and
block of a batch, not by a trigger per row (the two triggers were 38% of
applying a batch of new jobs)."""


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a database written by an older node (a loaded snapshot) up to this
    schema: the tables and indexes it lacks, the added columns (NULL), then
    their indexes, and the derived ``project_job_counts`` and ``job_blocks``
    filled if they were missing. Idempotent."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.executescript(SCHEMA)
    if "project_job_counts" not in tables:
        conn.execute(
            "INSERT INTO project_job_counts (project_id, jobs)"
            " SELECT project_id, COUNT(*) FROM jobs GROUP BY project_id"
        )
    if "job_blocks" not in tables:
        conn.execute(
            "INSERT INTO job_blocks (project_id, block, jobs)"
            f" SELECT project_id, id >> {JOB_BLOCK_BITS}, COUNT(*) FROM jobs GROUP BY 1, 2"
        )
    for index in REPLACED_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    for trigger in REPLACED_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for table, column, kind in ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    conn.executescript(ADDED_INDEXES)


MIN_SQLITE = (3, 38, 0)
"""Apply uses ``->>`` (3.38) and ``RETURNING`` (3.35). On an older SQLite those
commands would fail on this replica alone, and it would refuse what the others
accept; a node refuses to start on one instead."""


def sqlite_too_old() -> str | None:
    """Why this process's SQLite cannot run the state machine, or None."""
    if sqlite3.sqlite_version_info >= MIN_SQLITE:
        return None
    return (
        f"SQLite {sqlite3.sqlite_version} is older than"
        f" {'.'.join(map(str, MIN_SQLITE))}, which the state machine needs"
        " (use a Python built with a newer SQLite)"
    )


def connect(path: Path | str, *, writer: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    # Page cache (KiB): apply's writer keeps 16 MB; each reader (one per thread
    # that reads: the loop, the API's worker threads) 2 MB, SQLite's default.
    # Readers re-read from the OS's page cache cheaply, while 16 MB each grew
    # RSS by tens of MB once payloads of 20 KB were read on a few threads.
    conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB if writer else READER_CACHE_KIB}")
    if writer:
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        add_missing_columns(conn)
    else:
        conn.execute("PRAGMA query_only=ON")
    return conn


WRITER_CACHE_KIB = 16_000
READER_CACHE_KIB = 2_000

WAL_CHECKPOINT_PAGES = 16_384
"""Pages in the WAL (64 MB of 4 KB pages) before apply's commit copies them
into the database file; SQLite's default is 1,000. Each tick's fires and
results dirty the same pages again (the rows of the jobs fired, the leaves of
the ``(job_id, slot)`` index), so at 1,000 a busy node checkpointed at
nearly every commit and wrote each such page to the database once per
command; now it writes it once per ~64 MB of commits. A node firing 10,000
jobs a second spent 8 % of its apply in checkpoints (a profile of
SQLite's own frames); 3 nodes firing 10,000 a second used 66, 65 and 66 %
of a core against 74, 70 and 74 % in interleaved pairs. The WAL file grows
to about that size once and is reused (a clean close checkpoints it and
removes it)."""
