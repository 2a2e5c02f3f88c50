"""Executors (version 5): where the callbacks of the jobs that name one go."""

from __future__ import annotations

import sqlite3
from typing import Any

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import ApplyContext, Change, handles, require
from scheduler0.daemon.state.handlers.audit import DeletedObject, record_deletions
from scheduler0.errors import Conflict, NotFound

EXECUTOR_COLUMNS = ("name", "webhook_url", "webhook_method", "webhook_secret", "modified_by")
"""The columns an ``ExecutorUpdated`` may change."""


@handles(c.ExecutorCreated)
def executor_created(ctx: ApplyContext, cmd: c.ExecutorCreated) -> dict[str, Any]:
    cur = ctx.db.execute(
        "INSERT INTO executors (name, type, webhook_url, webhook_method, webhook_secret,"
        " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            cmd.name,
            cmd.type,
            cmd.webhook_url,
            cmd.webhook_method,
            cmd.webhook_secret,
            cmd.created_by,
            cmd.now,
            cmd.now,
        ),
    )
    return {"id": cur.lastrowid}


@handles(c.ExecutorUpdated)
def executor_updated(ctx: ApplyContext, cmd: c.ExecutorUpdated) -> dict[str, Any]:
    db = ctx.db
    require(db, "executors", cmd.executor_id, "executor")
    changes = {k: v for k, v in cmd.changes.items() if k in EXECUTOR_COLUMNS}
    assignments = "".join(f"{column} = ?, " for column in changes)
    db.execute(
        f"UPDATE executors SET {assignments}updated_at = ? WHERE id = ?",
        (*changes.values(), cmd.now, cmd.executor_id),
    )
    # The owners keep each job's callback head with its URL and secret: re-read them.
    ctx.changed(Change.JOBS, jobs_of(db, cmd.executor_id))
    return {"id": cmd.executor_id}


@handles(c.ExecutorDeleted)
def executor_deleted(ctx: ApplyContext, cmd: c.ExecutorDeleted) -> dict[str, Any]:
    db = ctx.db
    row = db.execute(
        "SELECT name, webhook_url, webhook_method FROM executors WHERE id = ?", (cmd.executor_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no executor with id {cmd.executor_id}")
    used = len(jobs_of(db, cmd.executor_id))
    if used:
        raise Conflict(
            f"executor {cmd.executor_id} is used by {used} job(s); point them at another"
            " executor or callback_url, or delete them, first"
        )
    record_deletions(
        db,
        cmd.now,
        cmd.deleted_by,
        [
            DeletedObject(
                "executor",
                cmd.executor_id,
                row[0],
                None,
                {"webhook_url": row[1], "webhook_method": row[2]},
            )
        ],
        cmd.deleted_as,
    )
    db.execute("DELETE FROM executors WHERE id = ?", (cmd.executor_id,))
    return {"id": cmd.executor_id}


def jobs_of(db: sqlite3.Connection, executor_id: int) -> list[int]:
    """The ids of the jobs that call back through ``executor_id``."""
    rows = db.execute("SELECT id FROM jobs WHERE executor_id = ? ORDER BY id", (executor_id,))
    return [row[0] for row in rows]
