"""Jobs: creation, changes, pause and run-now."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import ApplyContext, Change, CreatedJobs, handles, require
from scheduler0.daemon.state.handlers.audit import DeletedObject, record_deletions
from scheduler0.daemon.state.schema import (
    BACKFILL,
    JOB_BLOCK_BITS,
    MANUAL,
    MANUAL_PER_SECOND,
    bucket_of,
    encode_policy,
    execution_id,
    manual_slot,
)
from scheduler0.errors import Conflict, FieldError, NotFound, ValidationFailed

JOB_COLUMNS = (
    "spec",
    "timezone",
    "data",
    "callback_url",
    "execution_type",
    "anchor",
    "not_before",
    "next_run",
    "name",
    "executor_id",
    "modified_by",
)
"""The columns a ``JobUpdated`` may change (``labels`` is set by ``_set_labels``)."""
SCHEDULE_COLUMNS = frozenset({"spec", "timezone", "anchor", "not_before"})
"""A change of any of these moves the job's next run."""


@handles(c.JobsCreated)
def jobs_created(ctx: ApplyContext, cmd: c.JobsCreated) -> dict[str, Any]:
    db = ctx.db
    wanted = {job["project_id"] for job in cmd.jobs}
    known = {
        row[0]
        for row in db.execute(
            "SELECT id FROM projects WHERE id IN (SELECT value FROM json_each(?))",
            (orjson.dumps(sorted(wanted)).decode(),),
        )
    }
    unknown = [
        FieldError("project_id", f"no project with id {job['project_id']}", index)
        for index, job in enumerate(cmd.jobs)
        if job["project_id"] not in known
    ]
    if unknown:
        raise ValidationFailed(f"{len(unknown)} job(s) name an unknown project", unknown)
    _refuse_unknown_executors(db, cmd.jobs)
    _refuse_taken_names(db, cmd.jobs)
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
    first = (row[0] if row else 0) + 1
    now, created_by = cmd.now, cmd.created_by
    db.executemany(
        "INSERT INTO jobs (id, project_id, bucket, spec, timezone, data, callback_url,"
        " execution_type, anchor, not_before, created_at, updated_at, next_run, name, labels,"
        " policy, executor_id, created_by, paused)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                job_id,
                job["project_id"],
                bucket_of(job_id),
                job["spec"],
                job["timezone"],
                job.get("data"),
                job["callback_url"],
                job.get("execution_type", "http"),
                job["anchor"],
                job["anchor"],
                now,
                now,
                job.get("next_run"),
                job.get("name"),
                _labels_json(job["labels"]) if "labels" in job else None,
                encode_policy(job["policy"]) if job.get("policy") else None,  # version 4
                job.get("executor_id"),  # version 5
                job.get("created_by", created_by),
                1 if job.get("paused") else 0,  # absent in older entries: active
            )
            for job_id, job in enumerate(cmd.jobs, first)
        ),
    )
    _count_created(db, first, first + len(cmd.jobs) - 1)
    labelled = [(first + i, job["labels"]) for i, job in enumerate(cmd.jobs) if job.get("labels")]
    if labelled:
        db.executemany(
            "INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)",
            ((job_id, k, v) for job_id, labels in labelled for k, v in labels.items()),
        )
    if cmd.jobs:
        ctx.changed(Change.JOBS_CREATED, CreatedJobs(first, cmd.jobs))
    return {"ids": [first, first + len(cmd.jobs) - 1] if cmd.jobs else []}


def _count_created(db: sqlite3.Connection, first: int, last: int) -> None:
    """Add the jobs just inserted with ids ``first``..``last`` to
    ``project_job_counts`` and ``job_blocks``: one upsert per project and per
    block of the batch, counted by SQLite (their delete and move triggers keep
    them on every other change)."""
    db.execute(
        "INSERT INTO project_job_counts (project_id, jobs)"
        " SELECT project_id, COUNT(*) FROM jobs WHERE id BETWEEN ? AND ? GROUP BY project_id"
        " ON CONFLICT (project_id) DO UPDATE SET jobs = jobs + excluded.jobs",
        (first, last),
    )
    db.execute(
        "INSERT INTO job_blocks (project_id, block, jobs)"
        f" SELECT project_id, id >> {JOB_BLOCK_BITS}, COUNT(*) FROM jobs"
        " WHERE id BETWEEN ? AND ? GROUP BY 1, 2"
        " ON CONFLICT (project_id, block) DO UPDATE SET jobs = jobs + excluded.jobs",
        (first, last),
    )


def _refuse_unknown_executors(
    db: sqlite3.Connection, jobs: list[dict[str, Any]], index: bool = True
) -> None:
    """Every ``executor_id`` given (version 5) names an executor: a
    ``ValidationFailed`` naming each item's field otherwise."""
    wanted = sorted({job["executor_id"] for job in jobs if job.get("executor_id") is not None})
    if not wanted:
        return
    known = {
        row[0]
        for row in db.execute(
            "SELECT id FROM executors WHERE id IN (SELECT value FROM json_each(?))",
            (orjson.dumps(wanted).decode(),),
        )
    }
    unknown = [
        FieldError("executor_id", f"no executor with id {job['executor_id']}", i if index else None)
        for i, job in enumerate(jobs)
        if job.get("executor_id") is not None and job["executor_id"] not in known
    ]
    if unknown:
        raise ValidationFailed(f"{len(unknown)} job(s) name an unknown executor", unknown)


def _labels_json(labels: dict[str, str] | None) -> str | None:
    """``jobs.labels`` as stored: the map as JSON (keys sorted), NULL for none."""
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode() if labels else None


def _set_labels(db: sqlite3.Connection, job_id: int, labels: dict[str, str] | None) -> str | None:
    """Replace the job's labels (the searchable ``job_labels`` rows); the value
    for its ``labels`` column."""
    db.execute("DELETE FROM job_labels WHERE job_id = ?", (job_id,))
    if labels:
        db.executemany(
            "INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)",
            ((job_id, k, v) for k, v in labels.items()),
        )
    return _labels_json(labels)


def _refuse_taken_names(
    db: sqlite3.Connection, jobs: list[dict[str, Any]], renamed: int | None = None
) -> None:
    """A job name is unique within its project: ``Conflict`` naming each item
    whose name another job of its project holds (in the database, other than
    ``renamed``, or earlier in the same batch)."""
    named = [(i, job["project_id"], job["name"]) for i, job in enumerate(jobs) if job.get("name")]
    if not named:
        return
    taken = {
        (project_id, name)
        for project_id, name in db.execute(
            "SELECT project_id, name FROM jobs WHERE name IN (SELECT value FROM json_each(?))"
            " AND id IS NOT ?",
            (orjson.dumps(sorted({name for _, _, name in named})).decode(), renamed),
        )
    }
    clashes = []
    for index, project_id, name in named:
        if (project_id, name) in taken:
            clashes.append((index, project_id, name))
        taken.add((project_id, name))
    if clashes:
        index, project_id, name = clashes[0]
        where = "" if renamed is not None else f"item {index}: "
        raise Conflict(
            f"{where}a job named {name!r} already exists in project {project_id}",
            [
                FieldError("name", "already taken", None if renamed is not None else i)
                for i, _, _ in clashes
            ],
        )


@handles(c.JobUpdated)
def job_updated(ctx: ApplyContext, cmd: c.JobUpdated) -> dict[str, Any]:
    db = ctx.db
    require(db, "jobs", cmd.job_id, "job")
    changes = {k: v for k, v in cmd.changes.items() if k in JOB_COLUMNS}
    _refuse_unknown_executors(db, [changes], index=False)
    if changes.get("name") is not None:
        (project_id,) = db.execute(
            "SELECT project_id FROM jobs WHERE id = ?", (cmd.job_id,)
        ).fetchone()
        _refuse_taken_names(db, [{"project_id": project_id, "name": changes["name"]}], cmd.job_id)
    if "labels" in cmd.changes:  # added within version 3: absent in older entries
        changes["labels"] = _set_labels(db, cmd.job_id, cmd.changes["labels"])
    if "policy" in cmd.changes:  # version 4: merged into the job's policies
        changes["policy"] = _merged_policy(db, cmd.job_id, cmd.changes["policy"])
        if "pause_after_failures" in cmd.changes["policy"]:
            changes["consecutive_failures"] = 0  # counted from when the limit is set
    bump = ""
    if "next_run" in changes:  # version 3: a new schedule, and its first slot
        bump = ", revision = revision + 1"
    elif not SCHEDULE_COLUMNS.isdisjoint(changes):
        changes["next_run"] = None  # an older entry: the next run is not known
    if changes:
        assignments = ", ".join(f"{column} = ?" for column in changes) + bump
        db.execute(
            f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
            (*changes.values(), cmd.now, cmd.job_id),
        )
    ctx.changed(Change.JOBS, [cmd.job_id])
    return {"id": cmd.job_id}


def _merged_policy(db: sqlite3.Connection, job_id: int, given: dict[str, Any]) -> str | None:
    """The job's stored policies with ``given`` set over them (a None value
    returns that policy to its default)."""
    (raw,) = db.execute("SELECT policy FROM jobs WHERE id = ?", (job_id,)).fetchone()
    current: dict[str, Any] = {} if raw is None else orjson.loads(raw)
    return encode_policy({**current, **given})


@handles(c.JobDeleted)
def job_deleted(ctx: ApplyContext, cmd: c.JobDeleted) -> dict[str, Any]:
    db = ctx.db
    row = db.execute(
        "SELECT project_id, name, spec, callback_url FROM jobs WHERE id = ?", (cmd.job_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no job with id {cmd.job_id}")
    project_id, name, spec, callback_url = row
    deleted = DeletedObject(
        "job", cmd.job_id, name, project_id, {"spec": spec, "callback_url": callback_url}
    )
    record_deletions(db, cmd.now, cmd.deleted_by, [deleted], cmd.deleted_as)
    db.execute("DELETE FROM jobs WHERE id = ?", (cmd.job_id,))
    db.execute("DELETE FROM executions WHERE job_id = ?", (cmd.job_id,))
    db.execute("DELETE FROM job_labels WHERE job_id = ?", (cmd.job_id,))
    ctx.changed(Change.JOBS, [cmd.job_id])
    return {"id": cmd.job_id}


@handles(c.JobPaused)
def job_paused(ctx: ApplyContext, cmd: c.JobPaused) -> dict[str, Any]:
    db = ctx.db
    require(db, "jobs", cmd.job_id, "job")
    # Resuming skips the slots that fell due while paused: they were not
    # missed, they were not wanted. It moves the next run: a new revision.
    db.execute(
        "UPDATE jobs SET paused = ?, updated_at = ?, status_note = ?,"
        " modified_by = COALESCE(?, modified_by),"
        " not_before = CASE WHEN ? THEN not_before ELSE ? END,"
        " consecutive_failures = CASE WHEN ? THEN consecutive_failures ELSE 0 END,"
        " next_run = CASE WHEN ? THEN next_run ELSE ? END,"
        " revision = revision + ? WHERE id = ?",
        (
            int(cmd.paused),
            cmd.now,
            cmd.note,
            cmd.modified_by,
            int(cmd.paused),
            int(cmd.now),
            int(cmd.paused),  # a resume starts counting failures afresh
            int(cmd.paused),
            cmd.next_run,
            int(not cmd.paused and cmd.next_run is not None),  # a version-3 resume
            cmd.job_id,
        ),
    )
    ctx.changed(Change.JOBS, [cmd.job_id])
    return {"id": cmd.job_id, "paused": cmd.paused}


@handles(c.JobTriggered)
def job_triggered(ctx: ApplyContext, cmd: c.JobTriggered) -> dict[str, Any]:
    db = ctx.db
    row = db.execute("SELECT project_id FROM jobs WHERE id = ?", (cmd.job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job with id {cmd.job_id}")
    if cmd.manual:
        return _manual_run(ctx, cmd, row[0])
    cur = db.execute(
        "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, created_at,"
        " updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
        (cmd.job_id, row[0], cmd.slot, cmd.now, cmd.now),
    )
    if not cur.rowcount:
        raise Conflict(f"job {cmd.job_id} already has a run at slot {cmd.slot}")
    return {"job_id": cmd.job_id, "slot": cmd.slot}


def _manual_run(ctx: ApplyContext, cmd: c.JobTriggered, project_id: int) -> dict[str, Any]:
    """A manual run at the next free manual key of its second: after the
    latest manual run of the job in that second still held (the keys of one
    second run from ``manual_slot(second, 0)`` down)."""
    first = manual_slot(cmd.slot, 0)
    (lowest,) = ctx.db.execute(
        "SELECT MIN(slot) FROM executions WHERE job_id = ? AND slot BETWEEN ? AND ?",
        (cmd.job_id, manual_slot(cmd.slot, MANUAL_PER_SECOND - 1), first),
    ).fetchone()
    n = 0 if lowest is None else first - lowest + 1
    if n >= MANUAL_PER_SECOND:
        raise Conflict(
            f"job {cmd.job_id} already has {MANUAL_PER_SECOND} manual runs in second {cmd.slot}"
        )
    slot = manual_slot(cmd.slot, n)
    ctx.db.execute(
        "INSERT INTO executions (job_id, project_id, slot, state, created_at, updated_at,"
        " trigger) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
        (cmd.job_id, project_id, slot, cmd.now, cmd.now, MANUAL),
    )
    return {
        "job_id": cmd.job_id,
        "slot": cmd.slot,
        "execution_id": execution_id(cmd.job_id, slot),
        "trigger": MANUAL,
    }


REFIRED_STATES = ("missed", "skipped")
"""States of a slot's execution that a backfill fires again: the slot never
reached its receiver. Any other row (sent, in flight, pending, lost and
being adopted) means the slot is already done or underway."""


@handles(c.JobBackfilled)
def job_backfilled(ctx: ApplyContext, cmd: c.JobBackfilled) -> dict[str, Any]:
    """Queue each listed slot once, as a ``pending`` execution with trigger
    ``backfill`` (``commands.JobBackfilled``). Decided here, in log order, so
    two backfills of one range (or a repeat) queue every slot at most once.

    Slots later than the job's scheduling frontier (its last fired slot, or
    its start ``not_before`` when that is later) are the schedule's own: it
    fires them, or records them missed, itself; a backfill leaves them alone
    (``left_to_schedule``) so a slot is never sent by both."""
    db = ctx.db
    row = db.execute(
        "SELECT project_id, MAX(not_before, COALESCE(last_fired_slot, not_before))"
        " FROM jobs WHERE id = ?",
        (cmd.job_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no job with id {cmd.job_id}")
    project_id, frontier = row
    past = [slot for slot in cmd.slots if slot <= frontier]
    listed = orjson.dumps(past).decode()
    refired = db.execute(
        "UPDATE executions SET state = 'pending', trigger = ?, node_id = NULL, error = NULL,"
        " updated_at = ? WHERE job_id = ? AND state IN (?, ?)"
        " AND slot IN (SELECT value FROM json_each(?))",
        (BACKFILL, cmd.now, cmd.job_id, *REFIRED_STATES, listed),
    ).rowcount
    inserted = db.execute(
        "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, created_at,"
        " updated_at, trigger) SELECT ?, ?, value, 'pending', ?, ?, ? FROM json_each(?)"
        " ORDER BY key",
        (cmd.job_id, project_id, cmd.now, cmd.now, BACKFILL, listed),
    ).rowcount
    queued = refired + inserted
    return {
        "job_id": cmd.job_id,
        "requested": len(cmd.slots),
        "queued": queued,
        "already_done": len(past) - queued,
        "left_to_schedule": len(cmd.slots) - len(past),
        "first": cmd.slots[0] if cmd.slots else None,
        "last": cmd.slots[-1] if cmd.slots else None,
    }
