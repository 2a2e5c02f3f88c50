"""Fires and results held in memory, written to SQLite together.

Every node applies every fire and its result. Applied one command at a time,
a fire inserts an ``executions`` row and updates its job, its result updates
both again: four row writes a fire, each in its own transaction, so the pages
of the ``(job_id, slot)`` index and of the jobs fired are written to the WAL
four times a second. That was most of what a fire cost a cluster (DESIGN.md,
"Fires are written in batches").

``FireBuffer`` applies ``SlotsFired`` and ``ResultsRecorded`` to memory: it
decides what they accept from the database plus what it holds (the same
rules, the same outcome as ``handlers/firing.py``), and ``flush`` writes what
it holds in one transaction: each new ``executions`` row once, with its
result when the result came before the flush, and each job's row once, with
its counters summed. The database after a flush is the one the commands would
have left applied one by one, row ids included (rows are inserted in log
order), except for the rows a due flush keeps for their results (``write``
with ``keep``), which the next flush writes with the ids they would have had;
``tests/unit/test_fire_buffer.py`` holds the two side by side.

What it takes is what the common fire is: a ``SlotsFired`` with no missed,
skipped or caught-up slots of jobs without ``max_runs``, and a
``ResultsRecorded`` of groups whose jobs have no ``pause_after_failures``.
``take_*`` return None for anything else, and the state machine then flushes
and applies that command as before. If a flush finds what it did not expect
(a row it inserts already there), it rolls back and applies the commands it
holds one by one through their handlers (``replay``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import ApplyContext, json_ids
from scheduler0.daemon.state.handlers.firing import _firing_jobs, _FiringJob
from scheduler0.daemon.state.schema import bucket_of

UNSET: Any = object()
"""A job column the buffer has not set (its value in the database stands)."""


@dataclass(slots=True)
class _Job:
    """What the buffer changed of one job since the last flush."""

    last_fired: int | None
    """The job's last fired slot as the commands held leave it."""
    plain: bool | None = None
    """No ``pause_after_failures`` (None: not read yet)."""
    firing: _FiringJob | None = None
    """What ``_firing_jobs`` read of it (None: not read): only commands that
    flush first change a job's project, revision, policies, pause or owner."""
    fired: int = 0
    succeeded: int = 0
    failed: int = 0
    next_run: Any = UNSET
    """Set, with ``last_fired``, by each accepted fire."""
    last_state: Any = UNSET
    last_status_code: Any = UNSET
    last_finished_at: Any = None

    def change(self) -> tuple[Any, ...]:
        """The job's update, as ``_JOB_UPDATE``'s parameters before its ids."""
        fired, state, code = self.next_run is not UNSET, self.last_state, self.last_status_code
        return (
            self.fired,
            self.succeeded,
            self.failed,
            fired,
            self.last_fired if fired else None,
            fired,
            self.next_run if fired else None,
            state is not UNSET,
            None if state is UNSET else state,
            code is not UNSET,
            None if code is UNSET else code,
            self.last_finished_at,
        )


FireMeta = tuple[int, int, int, float]
"""What the rows of one run of a ``SlotsFired`` share: (project id, node id, epoch, now)."""

Outcome = tuple[str, Any, Any, Any, Any, float]
"""What the fires of one result group share: (state, status_code, attempts,
latency_ms, error, now)."""

_INSERT = (
    "INSERT OR IGNORE INTO executions (id, job_id, project_id, slot, state, node_id, epoch,"
    " attempts, status_code, latency_ms, error, created_at, updated_at)"
)
_INSERT_RUN = _INSERT + " SELECT ? + key, value, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM json_each(?)"
_INSERT_ROWS = (
    _INSERT + " SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,"
    " value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10,"
    " value ->> 11, value ->> 12 FROM json_each(?)"
)
"""Rows with the ids ``AUTOINCREMENT`` gives them inserted one by one in log
order (``_INSERT_RUN``: the run's first id, plus each row's place in it;
here each row's id is its first value): no ``ORDER BY key``, whose sort cost
a third of the insert."""
_NEXT_ID = (
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'executions'), 0),"
    " COALESCE((SELECT MAX(id) FROM executions), 0)) + 1"
)
_UPDATE_RUNS = (
    "UPDATE executions SET state = ?, status_code = ?, attempts = ?, latency_ms = ?, error = ?,"
    " updated_at = ? WHERE slot = ? AND job_id IN (SELECT value FROM json_each(?))"
)
_JOB_UPDATE = (
    "UPDATE jobs SET fired_count = fired_count + ?, success_count = success_count + ?,"
    " failed_count = failed_count + ?,"
    " last_fired_slot = CASE WHEN ? THEN ? ELSE last_fired_slot END,"
    " next_run = CASE WHEN ? THEN ? ELSE next_run END,"
    " last_state = CASE WHEN ? THEN ? ELSE last_state END,"
    " last_status_code = CASE WHEN ? THEN ? ELSE last_status_code END,"
    " last_finished_at = COALESCE(?, last_finished_at)"
    " WHERE id IN (SELECT value FROM json_each(?))"
)
_DISPATCHED: Outcome | None = None
_NO_ROWS: dict[int, Outcome | None] = {}
"""What ``fired`` holds of a slot it has no rows of (never written to)."""


@dataclass(slots=True)
class FireBuffer:
    """Fires and results applied to memory since the last ``flush``."""

    jobs: dict[int, _Job] = field(default_factory=dict)
    runs: list[tuple[FireMeta, int, list[int]]] = field(default_factory=list)
    """New ``executions`` rows in log order: runs of job ids sharing a slot."""
    rows: int = 0
    fired: dict[int, dict[int, Outcome | None]] = field(default_factory=dict)
    """The rows in ``runs`` by slot, then job: each one's latest result in log
    order (None: none yet). Keyed by slot, then job, not by (job, slot): no
    tuple made and hashed for each fire and each result."""
    updates: dict[int, dict[int, Outcome]] = field(default_factory=dict)
    """Results of executions not in ``runs`` (inserted before), by slot, then
    job: the latest."""
    updated: int = 0
    """Executions in ``updates``."""
    held: list[tuple[bytes, int | None, bytes]] = field(default_factory=list)
    """The entries applied here: (the entry, its log index, its outcome's
    digest), for ``replay``."""
    since: float | None = None
    """When the first command now held was taken (the node's monotonic clock)."""
    kept: list[tuple[FireMeta, int, int, list[int]]] = field(default_factory=list)
    """New rows of commands written already, not written with them (``write``
    with ``keep``): runs of (what they share, slot, the first one's id, job
    ids), their ids consecutive, in ``fired`` as well. Written by the next
    ``write``, whatever their result."""
    next_id: int | None = None
    """The id of the first row of ``runs``, when the database cannot say it
    (rows of ``kept`` have ids past its last); None: read at ``write``."""
    _keeping: list[tuple[FireMeta, int, int, list[int]]] = field(default_factory=list)
    """What the last ``write`` kept (``carried`` hands it on)."""
    _after: int | None = None
    """The id after the last row the last ``write`` placed, kept or written."""

    @property
    def size(self) -> int:
        """Executions held: new rows (kept ones too) and results of older ones."""
        return self.rows + self.updated

    @property
    def last_index(self) -> int | None:
        return next((index for _, index, _ in reversed(self.held) if index is not None), None)

    def carried(self) -> FireBuffer:
        """An empty buffer for the commands after this one was written, which
        keeps what this one read of each job it fired or recorded: its last
        fired slot (now written), whether it is ``plain`` and what
        ``_firing_jobs`` read. Those stay true until a command the buffer does
        not take is applied, and the state machine starts a new buffer before
        applying one. The same objects, their counters zeroed: at 10,000 fires
        a second every job was read again, and 20,000 objects made, after
        each flush. A job not fired or recorded since the last flush is not
        kept (a million jobs fired once an hour are not all held).

        The rows the write kept (``write`` with ``keep``) are held on, with
        their ids, for their results to land on them."""
        jobs: dict[int, _Job] = {}
        for job_id, job in self.jobs.items():
            if job.fired or job.last_finished_at is not None:
                job.fired = job.succeeded = job.failed = 0
                job.next_run = job.last_state = job.last_status_code = UNSET
                job.last_finished_at = None
                jobs[job_id] = job
        return FireBuffer(jobs=jobs)._holding(self._keeping, self._after)

    def kept_only(self) -> FireBuffer:
        """A buffer of the rows ``kept`` alone, as their fires left them (no
        result): what the commands before the held ones wrote one by one."""
        return FireBuffer()._holding(self.kept, self.next_id)

    def _holding(
        self, kept: list[tuple[FireMeta, int, int, list[int]]], next_id: int | None
    ) -> FireBuffer:
        if kept:
            self.kept, self.next_id = kept, next_id
            fired = self.fired
            for _, slot, _, ids in kept:
                fired.setdefault(slot, {}).update(dict.fromkeys(ids))
                self.rows += len(ids)
        return self

    # -- taking commands ---------------------------------------------------------------

    def take_fired(self, ctx: ApplyContext, cmd: c.SlotsFired) -> dict[str, Any] | None:
        """``slots_fired``'s outcome, with its rows and job changes held here;
        None (nothing held) for a command the buffer does not take.

        ``slots_fired``'s rules for a job without ``max_runs`` (``_accept``),
        on what the buffer holds of each job: its last fired slot, and what
        ``_firing_jobs`` read of it the first time (read again only for a job
        not read yet: at 10,000 fires a second that read was a fifth of a
        node's apply)."""
        if cmd.missed or cmd.skipped or cmd.caught_up or not _plain_fires(cmd):
            return None
        held = self.jobs
        unread = set()
        for job_id, _ in cmd.fires:
            mine = held.get(job_id)
            if mine is None or mine.firing is None:
                unread.add(job_id)
        if unread:
            read = _firing_jobs(ctx, cmd, unread)
            if any(job.runs_left is not None for job in read.values()):
                return None
            for job_id, job in read.items():
                mine = held.get(job_id)
                if mine is None:
                    held[job_id] = _Job(job.last_fired, not job.pauses, job)
                else:
                    mine.firing = job
        owners, node_id = ctx.assignment.owners, cmd.node_id
        loaded = cmd.revision_of()
        next_runs = {job_id: slot for slot, job_ids in cmd.following for job_id in job_ids}
        accepted: list[list[int]] = []
        fired, runs = self.fired, self.runs
        meta: FireMeta | None = None
        group: list[int] = []
        rows_slot: int | None = None
        rows: dict[int, Outcome | None] = {}
        for fire in cmd.fires:
            job_id, slot = fire
            mine = held.get(job_id)
            if mine is None or (firing := mine.firing) is None:
                continue  # no such job, paused, or another node's (read just now)
            last = mine.last_fired
            if (last is not None and slot <= last) or owners[bucket_of(job_id)] != node_id:
                continue
            next_run = next_runs.get(job_id)
            if next_run is not None and firing.revision != loaded.get(job_id, 0):
                next_run = None  # computed on the schedule before its change
            mine.last_fired = slot
            mine.fired += 1
            mine.next_run = next_run
            mine.last_state = "dispatched"
            accepted.append(fire)  # a [job_id, slot] list, as the handler's (_plain_fires)
            if slot != rows_slot:
                rows_slot = slot
                rows = fired.setdefault(slot, {})
            rows[job_id] = None
            if meta is None or meta[0] != firing.project_id or runs[-1][1] != slot:
                meta = (firing.project_id, node_id, cmd.epoch, cmd.now)
                group = []
                runs.append((meta, slot, group))
            group.append(job_id)
        self.rows += len(accepted)
        return {"accepted": accepted}

    def take_results(self, db: sqlite3.Connection, cmd: c.ResultsRecorded) -> dict[str, Any] | None:
        """``results_recorded``'s outcome, held here; None for a command the
        buffer does not take (version-1 ``results``, or a job of it with
        ``pause_after_failures``, whose failures may pause it)."""
        if (
            cmd.results
            or type(cmd.now) not in _NUMBERS
            or not all(_plain_group(group) for group in cmd.groups)
        ):
            return None
        held = self.jobs
        unread = set()
        for group in cmd.groups:
            for job_id in group[6]:
                mine = held.get(job_id)
                if mine is None or mine.plain is None:
                    unread.add(job_id)
                elif not mine.plain:
                    return None
        if unread:
            (text,) = db.execute(
                "SELECT json_group_array(json_array(id, last_fired_slot,"
                " policy ->> '$.pause_after_failures' IS NULL)) FROM jobs"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (json_ids(sorted(unread)),),
            ).fetchone()
            read = orjson.loads(text)
            if not all(plain for _, _, plain in read):
                return None
            for job_id, last_fired, _ in read:
                mine = held.get(job_id)
                if mine is None:
                    held[job_id] = _Job(last_fired, True)
                else:
                    mine.plain = True
        now, fired, updates = cmd.now, self.fired, self.updates
        for slot, state, code, attempts, latency, error, ids in cmd.groups:
            ok = state == "success"
            failed = not ok and state != "skipped"
            outcome: Outcome = (state, code, attempts, latency, error, now)
            rows = fired.get(slot, _NO_ROWS)
            older: dict[int, Outcome] | None = None
            for job_id in dict.fromkeys(ids):  # within a group a job counts once
                if job_id in rows:
                    rows[job_id] = outcome
                else:
                    if older is None:
                        older = updates.setdefault(slot, {})
                    self.updated += job_id not in older
                    older[job_id] = outcome
                mine = held.get(job_id)
                if mine is None:  # no such job: its executions are updated all the same
                    continue
                mine.succeeded += ok
                mine.failed += failed
                if mine.last_fired == slot:
                    mine.last_state, mine.last_status_code = state, code
                mine.last_finished_at = now
        return {"recorded": sum(len(group[6]) for group in cmd.groups)}

    # -- writing ---------------------------------------------------------------------

    def write(self, db: sqlite3.Connection, keep: bool = False) -> bool:
        """Write what is held, inside the caller's transaction. False when a row
        to insert was already there (the caller rolls back and replays): the
        commands applied one by one would have kept that row and updated it.

        Results of older rows first (a result held for a row not inserted
        yet updated nothing then), then the new rows in log order, each with
        its latest result, then each job once. Rows and jobs sharing every
        value go as one statement over their ids.

        With ``keep``, the new rows without a result yet are not written but
        kept (``carried``), with the ids they would have had: a fire is held
        ``FireAheadSeconds`` before its slot, so a flush found about one row
        in five without its result, wrote it, and wrote it again when the
        result came (an update through the ``(job_id, slot)`` index, and the
        row in and out of ``executions_not_succeeded``): those updates were a
        twentieth of a node's work at 10,000 fires a second. A row is kept
        once: the next write writes it, result or not."""
        self._write_updates(db)
        before = db.total_changes
        inserted = self._write_rows(db, keep)
        if db.total_changes - before != inserted or self._keeping_taken(db):
            return False
        by_change: dict[tuple[Any, ...], list[int]] = {}
        for job_id, job in self.jobs.items():
            if job.fired or job.last_finished_at is not None:
                by_change.setdefault(job.change(), []).append(job_id)
        for change, ids in by_change.items():
            db.execute(_JOB_UPDATE, (*change, json_ids(ids)))
        return True

    def _write_updates(self, db: sqlite3.Connection) -> None:
        by_outcome: dict[tuple[int, Outcome], list[int]] = {}
        for slot, outcomes in self.updates.items():
            for job_id, outcome in outcomes.items():
                by_outcome.setdefault((slot, outcome), []).append(job_id)
        for (slot, outcome), ids in by_outcome.items():
            db.execute(_UPDATE_RUNS, (*outcome, slot, json_ids(ids)))

    def _write_rows(self, db: sqlite3.Connection, keep: bool) -> int:
        """The new rows, with the ids they get in log order: one statement a
        run of rows sharing their fire and their outcome, or, when runs are
        short, one for all; how many were inserted. (A row already there
        makes the caller replay, so every row is inserted and the ids are
        those of one by one.) Rows kept before come first, with their ids;
        with ``keep``, runs of new rows without a result are kept
        (``_keeping``), not inserted."""
        fired = self.fired
        runs: list[tuple[FireMeta, int, Outcome | None, int, list[int]]] = [
            (meta, slot, outcome, first, ids)
            for meta, slot, start, group in self.kept
            for outcome, first, ids in _by_outcome(fired[slot], start, group)
        ]
        keeping: list[tuple[FireMeta, int, int, list[int]]] = []
        next_id = self.next_id
        if next_id is None:
            (next_id,) = db.execute(_NEXT_ID).fetchone()
        for meta, slot, group in self.runs:
            for outcome, first, ids in _by_outcome(fired[slot], next_id, group):
                if keep and outcome is None:
                    keeping.append((meta, slot, first, ids))
                else:
                    runs.append((meta, slot, outcome, first, ids))
            next_id += len(group)
        self._keeping, self._after = keeping, next_id
        inserted = sum(len(ids) for *_, ids in runs)
        if len(runs) * SHORT_RUN > inserted:
            rows = [
                [first + i, job_id, *_row(meta, slot, outcome)]
                for meta, slot, outcome, first, ids in runs
                for i, job_id in enumerate(ids)
            ]
            db.execute(_INSERT_ROWS, (orjson.dumps(rows).decode(),))
        else:
            for meta, slot, outcome, first, ids in runs:
                db.execute(_INSERT_RUN, (first, *_row(meta, slot, outcome), json_ids(ids)))
        return inserted

    def _keeping_taken(self, db: sqlite3.Connection) -> bool:
        """Whether a row ``_write_rows`` kept is there already: written now,
        it would be refused as such a row is, so the commands are replayed
        now, while they are held."""
        return any(
            db.execute(_TAKEN, (slot, json_ids(ids))).fetchone() is not None
            for _, slot, _, ids in self._keeping
        )


def _by_outcome(
    outcomes: dict[int, Outcome | None], first: int, group: list[int]
) -> Iterator[tuple[Outcome | None, int, list[int]]]:
    """The rows of ``group`` (ids from ``first``, in order) cut where their
    outcome changes: (outcome, the first row's id, job ids)."""
    current: list[int] = []
    last: Outcome | None = _DISPATCHED
    for job_id in group:
        outcome = outcomes[job_id]
        if outcome != last and current:
            yield last, first, current
            first += len(current)
            current = []
        last = outcome
        current.append(job_id)
    if current:
        yield last, first, current


_TAKEN = (
    "SELECT 1 FROM executions WHERE slot = ? AND job_id IN (SELECT value FROM json_each(?)) LIMIT 1"
)


def _plain_fires(cmd: c.SlotsFired) -> bool:
    """Fires and next runs of the shape nodes propose (``[job_id, slot]``
    lists of integers, as decoded), at a time that is a number: anything else
    goes to the handler, which gives it SQLite's meaning (a ``now`` of null
    fails there, on the rows' ``NOT NULL``)."""
    return (
        type(cmd.now) in _NUMBERS
        and all(
            type(fire) is list and len(fire) == 2 and type(fire[0]) is int and type(fire[1]) is int
            for fire in cmd.fires
        )
        and all(
            len(entry) == 2
            and type(entry[0]) is int
            and all(type(job_id) is int for job_id in entry[1])
            for entry in cmd.following
        )
    )


_NUMBERS = (int, float)
"""The types of a ``now`` the buffer takes (not ``bool``, not null)."""


def _plain_group(group: list[Any]) -> bool:
    """A result group of the shape nodes propose: integers where the handler
    compares, text without NUL (SQLite's JSON functions cut text at one)."""
    if len(group) != 7:
        return False
    slot, state, code, attempts, latency, error, ids = group
    return (
        type(slot) is int
        and type(state) is str
        and "\0" not in state
        and (code is None or type(code) is int)
        and type(attempts) is int
        and (latency is None or type(latency) is int)
        and (error is None or (type(error) is str and "\0" not in error))
        and type(ids) is list
        and all(type(job_id) is int for job_id in ids)
    )


SHORT_RUN = 8
"""Rows per run below which ``_write_rows`` sends one statement for all rows."""


def _row(meta: FireMeta, slot: int, outcome: Outcome | None) -> tuple[Any, ...]:
    """A new row's columns after ``job_id``."""
    project_id, node_id, epoch, now = meta
    if outcome is None:
        return (project_id, slot, "dispatched", node_id, epoch, 0, None, None, None, now, now)
    state, code, attempts, latency, error, updated = outcome
    return (project_id, slot, state, node_id, epoch, attempts, code, latency, error, now, updated)
