"""Fires, their results, lost and re-dispatched executions, retention."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import ApplyContext, Change, handles, json_ids
from scheduler0.daemon.state.handlers.audit import prune_audit_log, trim_fairly
from scheduler0.daemon.state.schema import (
    BACKFILL,
    CATCHUP,
    NO_NEXT_RUN,
    NOT_SUCCEEDED,
    bucket_of,
    run_second,
)

MAX_RUN_STATEMENTS = 16
"""Above this many (project, slot) runs in one ``SlotsFired``, one statement."""


@dataclass(slots=True)
class _FiringJob:
    """A job of a ``SlotsFired`` that the proposer owns and that is active."""

    project_id: int
    last_fired: int | None
    revision: int
    runs_left: int | None
    """Scheduled runs its ``max_runs`` still allows (None: no limit)."""
    pauses: bool = False
    """It has ``pause_after_failures`` (read for ``fire_buffer``)."""


Run = tuple[int, int, list[int]]
"""(project id, slot, job ids): consecutive accepted fires sharing a project and slot."""


@handles(c.SlotsFired)
def slots_fired(ctx: ApplyContext, cmd: c.SlotsFired) -> dict[str, Any]:
    """Accept a slot only if the job is active, its bucket belongs to the
    proposing node in the CURRENT assignment, and the slot is later than the
    job's last fired slot. Missed slots advance the job the same way.

    The proposer's epoch is recorded but not required to be current: a
    bucket that did not move in a reassignment keeps firing, and a slot is
    still accepted at most once, because acceptance is decided here in log
    order against ``last_fired_slot``.

    A job with ``max_runs`` (version 4) accepts no fire past it, and its
    last allowed fire leaves it with no next run (``NO_NEXT_RUN``): completed.

    ``skipped`` slots (version 4: the proposer's overlap policy skipped them)
    are recorded ``skipped`` with their reason, after the fires, under the
    same rule as missed ones (a later slot of an active job the proposer
    owns); they take the slot without counting as a run.

    The accepted fires listed in ``caught_up`` (version 4; absent in older
    entries: none) are recorded with trigger ``catchup``: the proposer
    marks them, so every replica stores the same trigger.

    A job the tick advances (a fire accepted, or missed slots recorded) keeps
    the slot ``following`` gives it as its next run, unless its schedule
    changed since the proposer loaded it (the revisions differ: the proposer's
    slot is on the old grid). Then, and for entries older than version 3, the
    job's next run is unknown (NULL) until its next fire."""
    jobs = _firing_jobs(ctx, cmd)
    loaded = cmd.revision_of()
    next_runs = {
        job_id: slot
        for slot, job_ids in cmd.following
        for job_id in job_ids
        if (job := jobs.get(job_id)) is not None and job.revision == loaded.get(job_id, 0)
    }
    _record_missed(ctx.db, cmd, jobs, next_runs)
    accepted, runs, by_slot = _accept(cmd, jobs, next_runs)
    _insert_dispatched(ctx.db, cmd, runs)
    if cmd.caught_up:
        _mark_caught_up(ctx.db, cmd, accepted)
    # Ascending slots: a job accepted twice in one command ends on its latest.
    for slot, next_run in sorted(by_slot, key=lambda key: key[0]):
        ctx.db.execute(
            "UPDATE jobs SET last_fired_slot = ?, fired_count = fired_count + 1,"
            " last_state = 'dispatched', next_run = ?"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (slot, next_run, json_ids(by_slot[slot, next_run])),
        )
    if cmd.skipped:
        _record_skipped(ctx.db, cmd, jobs, next_runs)
    return {"accepted": accepted}


def _firing_jobs(
    ctx: ApplyContext, cmd: c.SlotsFired, ids: set[int] | None = None
) -> dict[int, _FiringJob]:
    """The command's jobs (or those of ``ids``) that exist, are active and
    are the proposer's now. Read as one JSON array: building a Python row per
    job cost about as much as SQLite's finding it."""
    if ids is None:
        ids = {entry[0] for entry in cmd.fires} | {entry[0] for entry in cmd.missed}
        ids.update(entry[0] for entry in cmd.skipped)
    owners, node_id = ctx.assignment.owners, cmd.node_id
    (listed,) = ctx.db.execute(
        "SELECT json_group_array(json_array(id, project_id, last_fired_slot, revision,"
        " policy ->> '$.max_runs', fired_count, policy ->> '$.pause_after_failures' IS NOT NULL))"
        " FROM jobs WHERE id IN (SELECT value FROM json_each(?)) AND NOT paused",
        (orjson.dumps(sorted(ids)).decode(),),
    ).fetchone()
    return {
        job_id: _FiringJob(
            project_id,
            last_fired,
            revision,
            None if max_runs is None else max_runs - fired,
            bool(pauses),
        )
        for job_id, project_id, last_fired, revision, max_runs, fired, pauses in orjson.loads(
            listed
        )
        if owners[bucket_of(job_id)] == node_id
    }


def _record_missed(
    db: sqlite3.Connection,
    cmd: c.SlotsFired,
    jobs: dict[int, _FiringJob],
    next_runs: dict[int, int],
) -> None:
    """Rows and counters for the missed slots later than each job's last
    fired slot. The rows go in as one statement over a JSON array of (job,
    project, slot), in the order ``executemany`` inserted them before (row
    ids are replicated state): a catch-up lists up to ``MISSED_LISTED`` slots
    a job, and a statement per row cost ~13 µs a row on every node."""
    rows: list[list[int]] = []
    counts: dict[int, int] = {}
    for job_id, slots, uncounted in cmd.missed_entries():
        job = jobs.get(job_id)
        if job is None:
            continue
        last = job.last_fired
        fresh = [s for s in slots if last is None or s > last]
        if not fresh:
            continue
        project_id = job.project_id
        rows.extend([job_id, project_id, s] for s in fresh)
        job.last_fired = max(fresh)
        counts[job_id] = len(fresh) + int(uncounted)
    if not rows:
        return
    _insert_triples(db, cmd, "missed", rows)
    db.executemany(
        "UPDATE jobs SET missed_count = missed_count + ?, last_fired_slot = ?,"
        " last_state = 'missed', next_run = ? WHERE id = ?",
        ((n, jobs[j].last_fired, next_runs.get(j), j) for j, n in counts.items()),
    )


def _record_skipped(
    db: sqlite3.Connection,
    cmd: c.SlotsFired,
    jobs: dict[int, _FiringJob],
    next_runs: dict[int, int],
) -> None:
    """Rows (``error``: the reason) and the job's last slot for the skipped
    slots later than each job's last fired slot; none for a job its
    ``max_runs`` completed."""
    rows: list[tuple[Any, ...]] = []
    advanced: dict[int, int] = {}
    for job_id, slots, reason in cmd.skipped_entries():
        job = jobs.get(job_id)
        if job is None or (job.runs_left is not None and job.runs_left <= 0):
            continue
        last = job.last_fired
        fresh = [s for s in slots if last is None or s > last]
        if not fresh:
            continue
        rows.extend(
            (job_id, job.project_id, s, cmd.node_id, cmd.epoch, reason, cmd.now, cmd.now)
            for s in fresh
        )
        job.last_fired = advanced[job_id] = max(fresh)
    if not rows:
        return
    db.executemany(
        "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, node_id, epoch,"
        " error, created_at, updated_at) VALUES (?, ?, ?, 'skipped', ?, ?, ?, ?, ?)",
        rows,
    )
    db.executemany(
        "UPDATE jobs SET last_fired_slot = ?, last_state = 'skipped', next_run = ? WHERE id = ?",
        ((slot, next_runs.get(j), j) for j, slot in advanced.items()),
    )


SlotAndNext = tuple[int, int | None]
"""(fired slot, next run): the accepted jobs sharing both take one statement."""


def _accept(
    cmd: c.SlotsFired, jobs: dict[int, _FiringJob], next_runs: dict[int, int]
) -> tuple[list[list[int]], list[Run], dict[SlotAndNext, list[int]]]:
    """The accepted fires in order, grouped into runs and by slot and next run."""
    accepted: list[list[int]] = []
    runs: list[Run] = []
    by_slot: dict[SlotAndNext, list[int]] = {}
    for job_id, slot in cmd.fires:
        job = jobs.get(job_id)
        if job is None or (job.last_fired is not None and slot <= job.last_fired):
            continue
        next_run = next_runs.get(job_id)
        if job.runs_left is not None:  # version 4: max_runs
            if job.runs_left <= 0:
                continue
            job.runs_left -= 1
            if job.runs_left == 0:
                next_run = NO_NEXT_RUN  # its last run: the job is completed
        job.last_fired = slot
        accepted.append([job_id, slot])
        if runs and runs[-1][0] == job.project_id and runs[-1][1] == slot:
            runs[-1][2].append(job_id)
        else:
            runs.append((job.project_id, slot, [job_id]))
        by_slot.setdefault((slot, next_run), []).append(job_id)
    return accepted, runs, by_slot


def _insert_dispatched(db: sqlite3.Connection, cmd: c.SlotsFired, runs: list[Run]) -> None:
    """Rows are inserted in the order of ``fires`` (row ids are replicated
    state). A tick's fires come sorted by slot, so they form a few runs of one
    (project, slot): one set-based statement per run instead of one per row
    keeps apply cheap on every node. Many short runs (many projects
    interleaved) go as one statement over (job, project, slot)."""
    if len(runs) <= MAX_RUN_STATEMENTS:
        for project_id, slot, group in runs:
            db.execute(
                "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, node_id,"
                " epoch, created_at, updated_at) SELECT value, ?, ?, 'dispatched', ?, ?, ?, ?"
                " FROM json_each(?) ORDER BY key",
                (project_id, slot, cmd.node_id, cmd.epoch, cmd.now, cmd.now, json_ids(group)),
            )
    elif runs:
        triples = [[j, project_id, slot] for project_id, slot, group in runs for j in group]
        _insert_triples(db, cmd, "dispatched", triples)


def _insert_triples(
    db: sqlite3.Connection, cmd: c.SlotsFired, state: str, triples: list[list[int]]
) -> None:
    """One row in ``state`` for each (job, project, slot), in the order given
    (row ids are replicated state), as one statement over a JSON array."""
    db.execute(
        "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, node_id,"
        " epoch, created_at, updated_at) SELECT value ->> 0, value ->> 1, value ->> 2,"
        " ?, ?, ?, ?, ? FROM json_each(?) ORDER BY key",
        (state, cmd.node_id, cmd.epoch, cmd.now, cmd.now, orjson.dumps(triples).decode()),
    )


def _mark_caught_up(db: sqlite3.Connection, cmd: c.SlotsFired, accepted: list[list[int]]) -> None:
    """Trigger ``catchup`` on the rows this command inserted for its
    ``caught_up`` fires (only accepted ones: a refused fire inserted nothing)."""
    fired = {(job_id, slot) for job_id, slot in accepted}
    marked = [[j, s] for j, s in cmd.caught_up if (j, s) in fired]
    if marked:
        db.execute(
            "UPDATE executions SET trigger = ? WHERE (job_id, slot) IN"
            " (SELECT value ->> 0, value ->> 1 FROM json_each(?)) AND trigger IS NULL",
            (CATCHUP, orjson.dumps(marked).decode()),
        )


@handles(c.ResultsRecorded)
def results_recorded(ctx: ApplyContext, cmd: c.ResultsRecorded) -> dict[str, Any]:
    """Version-1 ``results`` row by row, exactly as version 1 applied them
    (journals replay them); ``groups`` with one statement per table each:
    every fire of one POST shares its outcome.

    Jobs with ``pause_after_failures`` (version 4) count their consecutive
    failed executions here, in log order, so every replica counts the same
    and pauses the job at the same entry (``_CONSECUTIVE_FAILURES``,
    ``_pause_failing``)."""
    db = ctx.db
    if cmd.results:
        _legacy_results(ctx.db, cmd)
    paused: list[int] = []
    for slot, state, code, attempts, latency, error, ids in cmd.groups:
        listed = json_ids(ids)
        db.execute(
            "UPDATE executions SET state = ?, status_code = ?, attempts = ?, latency_ms = ?,"
            " error = ?, updated_at = ? WHERE slot = ?"
            " AND job_id IN (SELECT value FROM json_each(?))",
            (state, code, attempts, latency, error, cmd.now, slot, listed),
        )
        ok = state == "success"
        failed = not ok and state != "skipped"
        db.execute(
            "UPDATE jobs SET success_count = success_count + ?,"
            " failed_count = failed_count + ?,"
            " last_state = CASE WHEN last_fired_slot = ? THEN ? ELSE last_state END,"
            " last_status_code ="
            " CASE WHEN last_fired_slot = ? THEN ? ELSE last_status_code END,"
            f" last_finished_at = ?, consecutive_failures = {_CONSECUTIVE_FAILURES}"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (int(ok), int(failed), slot, state, slot, code, cmd.now, int(ok), int(failed), listed),
        )
        if failed:
            paused.extend(_pause_failing(db, cmd.now, error, listed))
    if paused:
        ctx.changed(Change.JOBS, paused)  # their owner stops firing them
    return {"recorded": len(cmd.results) + sum(len(g[6]) for g in cmd.groups)}


_CONSECUTIVE_FAILURES = (
    "CASE WHEN policy ->> '$.pause_after_failures' IS NULL THEN consecutive_failures"
    " WHEN ? THEN 0 ELSE consecutive_failures + ? END"
)
"""A job's consecutive failed executions, as each of its results sets them:
a success resets the count, a failure adds one, a run ``skipped`` (a fire
decided ahead whose job was paused or deleted before its slot) leaves it.
Such a run counts neither as a success nor as a failure. Jobs without
``pause_after_failures`` are left alone (their counter stays 0), so entries
older than version 4 apply as they did. Part of the result's one update of
each job: a second pass over the jobs to count cost every fire's result a
lookup of its job."""


def _pause_failing(db: sqlite3.Connection, now: float, error: str | None, listed: str) -> list[int]:
    """After a failure: pause the listed jobs whose consecutive failures
    reached their ``pause_after_failures``, with the reason as their
    ``status_note``. Returns the ids of the jobs paused."""
    rows = db.execute(
        "UPDATE jobs SET paused = 1, updated_at = ?,"
        " status_note = 'paused after ' || consecutive_failures"
        " || ' consecutive failures (last: ' || ? || ')'"
        " WHERE id IN (SELECT value FROM json_each(?)) AND NOT paused"
        " AND consecutive_failures >= policy ->> '$.pause_after_failures'"
        " RETURNING id",
        (now, error or "failed", listed),
    ).fetchall()
    return sorted(row[0] for row in rows)


@handles(c.ExecutionsLost)
def executions_lost(ctx: ApplyContext, cmd: c.ExecutionsLost) -> dict[str, Any]:
    db = ctx.db
    db.executemany(
        "UPDATE executions SET state = 'lost', updated_at = ?"
        " WHERE job_id = ? AND slot = ? AND state = 'dispatched'",
        ((cmd.now, job_id, slot) for job_id, slot in cmd.executions),
    )
    return {"lost": len(cmd.executions)}


@handles(c.NodeRunsLost)
def node_runs_lost(ctx: ApplyContext, cmd: c.NodeRunsLost) -> dict[str, Any]:
    """Every execution still ``dispatched`` by the node, except those it keeps,
    becomes ``lost`` (read through the ``executions_not_succeeded`` index)."""
    cur = ctx.db.execute(
        "UPDATE executions SET state = 'lost', updated_at = ?"
        f" WHERE state = 'dispatched' AND {NOT_SUCCEEDED} AND node_id = ?"
        " AND (job_id, slot) NOT IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
        (cmd.now, cmd.node_id, orjson.dumps(cmd.keep).decode()),
    )
    return {"lost": cur.rowcount}


@handles(c.ExecutionsRedispatched)
def executions_redispatched(ctx: ApplyContext, cmd: c.ExecutionsRedispatched) -> dict[str, Any]:
    """Hand ``lost`` or ``pending`` executions to the current owner of their
    bucket, once."""
    db = ctx.db
    accepted = []
    for job_id, slot in cmd.executions:
        if ctx.assignment.owners[bucket_of(job_id)] != cmd.node_id:
            continue
        cur = db.execute(
            "UPDATE executions SET state = 'dispatched', node_id = ?, updated_at = ?"
            " WHERE job_id = ? AND slot = ? AND state IN ('lost', 'pending')",
            (cmd.node_id, cmd.now, job_id, slot),
        )
        if cur.rowcount:
            accepted.append([job_id, slot])
    return {"accepted": accepted}


UNSENT_BACKFILL = "NOT (trigger IS 'backfill' AND state IN ('pending', 'lost'))"
"""Backfilled runs not sent yet: kept by every rule of retention (they are
old slots, so the per-job rule, which keeps the newest seconds, would drop
them before they are sent)."""


@handles(c.ExecutionsPruned)
def executions_pruned(ctx: ApplyContext, cmd: c.ExecutionsPruned) -> dict[str, Any]:
    """Retention: rows past the global cap (with ``fair``, shared among
    projects: ``trim_fairly``), older than ``before``, and past
    ``per_job`` rows of a job (its newest seconds kept). ``dispatched`` rows
    stay. Backfilled rows (``trigger = 'backfill'``, which no entry older than
    ``JobBackfilled`` wrote, so those apply as before) stay while unsent, and
    are not counted or dropped by the per-job rule: they are the record that
    their slots ran, kept for ``before`` (``ExecutionRetentionSeconds``), so
    repeating a backfill does not send them again. With ``audit_keep_rows``
    or ``audit_before``, the audit log is bounded in the same transaction."""
    db = ctx.db
    before = db.total_changes
    # Executions go with their job, so with jobs in one project at most, every
    # row is that project's: sharing the cap changes nothing, and costs a scan.
    (tenants,) = db.execute("SELECT COUNT(*) FROM project_job_counts WHERE jobs > 0").fetchone()
    if not cmd.fair or tenants <= 1:  # as every older entry: the oldest rows first
        (top,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM executions").fetchone()
        db.execute(
            f"DELETE FROM executions WHERE id <= ? AND state != 'dispatched' AND {UNSENT_BACKFILL}",
            (top - cmd.keep_rows,),
        )
    elif db.execute("SELECT COUNT(*) FROM executions").fetchone()[0] > cmd.keep_rows:
        # Counted through the narrowest index (ms); only then by project (a scan).
        trim_fairly(db, "executions", f"state != 'dispatched' AND {UNSENT_BACKFILL}", cmd.keep_rows)
    db.execute(
        "DELETE FROM executions WHERE created_at < ? AND state != 'dispatched'"
        f" AND {UNSENT_BACKFILL}",
        (cmd.before,),
    )
    past = _past_per_job(db, cmd.job_id_from, cmd.job_id_to, cmd.per_job)
    if past:
        db.execute(
            "DELETE FROM executions WHERE id IN (SELECT value FROM json_each(?))",
            (json_ids(past),),
        )
    deleted = db.total_changes - before
    if cmd.audit_keep_rows is None and cmd.audit_before is None:
        return {"deleted": deleted}  # as every older entry
    return {
        "deleted": deleted,
        "audit_deleted": prune_audit_log(
            db, cmd.audit_keep_rows, cmd.audit_before, fair=bool(cmd.fair)
        ),
    }


def _past_per_job(db: sqlite3.Connection, first: int, last: int, per_job: int) -> list[int]:
    """Ids of the executions of jobs ``first`` to ``last`` past each job's
    newest ``per_job`` by run second, then slot; backfilled rows are neither
    counted nor dropped.

    The same rows as a window (``row_number() OVER (PARTITION BY job_id ORDER
    BY run second DESC, slot DESC)``), which older versions ran in SQL: it
    sorted every row of the range on every node, ~3.4 µs a row. Here the
    rows come in the order of the ``(job_id, slot)`` index, read from the
    index alone, and that order is already by run second unless the job has
    manual runs (negative slots, sorted first); only such a job's rows are
    sorted.

    Only the jobs with more than ``per_job`` rows in all are read row by row:
    SQLite counts each job's rows in the index first (a prune of 5,000 jobs
    of 50 rows each: 17 ms, against 119 ms for building every row in Python,
    on every node every ``PRUNE_EVERY``). The count includes backfilled rows,
    so it passes every job the rule can drop from, and the rows dropped are
    the same. Those jobs are sought one by one when they are fewer than half
    of the range's, else the range is read whole (one seek each cost more
    than the rows skipped saved)."""
    cursor = db.cursor()
    cursor.row_factory = None
    counts = cursor.execute(
        "SELECT job_id, COUNT(*) FROM executions WHERE job_id BETWEEN ? AND ? GROUP BY job_id",
        (first, last),
    ).fetchall()
    over = [job_id for job_id, rows in counts if rows > per_job]
    if not over:
        return []
    backfilled = {
        row[0]
        for row in cursor.execute(
            "SELECT id FROM executions WHERE trigger = ? AND job_id BETWEEN ? AND ?",
            (BACKFILL, first, last),
        )
    }
    if 2 * len(over) < len(counts):
        cursor.execute(
            "SELECT job_id, slot, id FROM executions"
            " WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id, slot",
            (json_ids(over),),
        )
    else:
        cursor.execute(
            "SELECT job_id, slot, id FROM executions WHERE job_id BETWEEN ? AND ?"
            " ORDER BY job_id, slot",
            (first, last),
        )
    past: list[int] = []
    for _job, rows in groupby(cursor, key=itemgetter(0)):
        runs = [(slot, row_id) for _, slot, row_id in rows if row_id not in backfilled]
        if len(runs) <= per_job:
            continue
        if runs[0][0] < 0:  # manual runs: their slots do not sort by run second
            runs.sort(key=lambda run: (run_second(run[0]), run[0]))
        past.extend(row_id for _, row_id in runs[:-per_job])
    return past


def _legacy_results(db: sqlite3.Connection, cmd: c.ResultsRecorded) -> None:
    db.executemany(
        "UPDATE executions SET state = ?, status_code = ?, attempts = ?, latency_ms = ?,"
        " error = ?, updated_at = ? WHERE job_id = ? AND slot = ?",
        (
            (state, code, attempts, latency, error, cmd.now, job_id, slot)
            for job_id, slot, state, code, attempts, latency, error in cmd.results
        ),
    )
    db.executemany(
        "UPDATE jobs SET success_count = success_count + ?, failed_count = failed_count + ?,"
        " last_state = CASE WHEN last_fired_slot = ? THEN ? ELSE last_state END,"
        " last_status_code = CASE WHEN last_fired_slot = ? THEN ? ELSE last_status_code END,"
        " last_finished_at = ? WHERE id = ?",
        (
            (state == "success", state != "success", slot, state, slot, code, cmd.now, job_id)
            for job_id, slot, state, code, _attempts, _latency, _error in cmd.results
        ),
    )
