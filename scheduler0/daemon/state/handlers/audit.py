"""The audit log: who deleted what, and when.

Every command that deletes something and carries its ``deleted_by`` records
each object it deletes through ``record_deletions``, in its own transaction:
the record is made of the command's stamped ``now`` and ``deleted_by`` and of
the row as it stood in this replica's log order, so it is the same on every
node. A delete without ``deleted_by`` (every entry older than the field)
records nothing, as it did. ``ExecutionsPruned`` bounds the log
(``prune_audit_log``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson

DELETED = "deleted"
"""``audit_log.action`` of a deletion (the only action recorded so far)."""


class DeletedObject(NamedTuple):
    """One object a command deletes, as its audit record names it."""

    kind: str
    """``project``, ``job``, ``credential`` or ``executor`` (``models.AuditKind``)."""
    object_id: int
    name: str | None = None
    project_id: int | None = None
    """The project it belonged to (a project's own id); None: no project's
    (a credential), and then only operators see the record."""
    detail: Mapping[str, Any] | None = None
    """What else identifies it (a job's spec and callback URL, a credential's
    api key), stored as JSON with sorted keys."""


def record_deletions(
    db: sqlite3.Connection,
    now: float,
    deleted_by: str | None,
    objects: Sequence[DeletedObject],
    deleted_as: str | None = None,
) -> int:
    """Record ``objects`` as deleted by ``deleted_by`` (as the client named
    it), asked by the authenticated ``deleted_as``, at ``now`` (the command's
    stamped values, never the clock); nothing when ``deleted_by`` is None.
    Returns the records written. Call it before the rows are deleted, in the
    deleting command's transaction."""
    if deleted_by is None or not objects:
        return 0
    db.executemany(
        "INSERT INTO audit_log (at, action, kind, object_id, name, project_id, actor, detail,"
        " principal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                now,
                DELETED,
                item.kind,
                item.object_id,
                item.name,
                item.project_id,
                deleted_by,
                None
                if not item.detail
                else orjson.dumps(item.detail, option=orjson.OPT_SORT_KEYS).decode(),
                deleted_as,
            )
            for item in objects
        ),
    )
    return len(objects)


def prune_audit_log(
    db: sqlite3.Connection, keep_rows: int | None, before: float | None, *, fair: bool = False
) -> int:
    """Retention of the audit log: at most ``keep_rows`` records (the newest;
    ``fair``: shared among projects, ``trim_fairly``), none recorded before
    ``before`` (either None: that rule is not applied). Returns the records
    dropped."""
    dropped = 0
    if keep_rows is not None and fair:
        dropped += trim_fairly(db, "audit_log", "1", keep_rows)
    elif keep_rows is not None:
        (top,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM audit_log").fetchone()
        dropped += db.execute("DELETE FROM audit_log WHERE id <= ?", (top - keep_rows,)).rowcount
    if before is not None:
        dropped += db.execute("DELETE FROM audit_log WHERE at < ?", (before,)).rowcount
    return dropped


def fair_level(counts: list[int], cap: int) -> int:
    """The largest level L with ``sum(min(n, L) for n in counts) <= cap``
    (max-min fairness: every project under L keeps all it holds, the others L
    each). Only meaningful when ``sum(counts) > cap``."""
    remaining, left = cap, len(counts)
    for n in sorted(counts):
        if n * left > remaining:
            return remaining // left
        remaining -= n
        left -= 1
    return max(counts, default=0)


def trim_fairly(db: sqlite3.Connection, table: str, droppable: str, cap: int) -> int:
    """Keep at most ``cap`` of ``table``'s rows matching ``droppable`` (SQL),
    shared fairly among projects: over the cap, each project holding more than
    the fair level (``fair_level``) drops its oldest rows down to it, and no
    other project loses one. So a project filling the cap pushes out its own
    rows, not another's. Rows not ``droppable`` are neither counted nor
    dropped; rows of no project (NULL) count as one project. Returns the rows
    dropped. Deterministic: projects in id order, rows by id."""
    counts = db.execute(
        f"SELECT project_id, COUNT(*) FROM {table} WHERE {droppable} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    if sum(n for _, n in counts) <= cap:
        return 0
    level = fair_level([n for _, n in counts], cap)
    dropped = 0
    for project_id, n in counts:
        if n > level:  # its oldest n - level: every row up to the last of them
            (last,) = db.execute(
                f"SELECT id FROM {table} WHERE project_id IS ? AND {droppable}"
                " ORDER BY id LIMIT 1 OFFSET ?",
                (project_id, n - level - 1),
            ).fetchone()
            dropped += db.execute(
                f"DELETE FROM {table} WHERE project_id IS ? AND {droppable} AND id <= ?",
                (project_id, last),
            ).rowcount
    return dropped
