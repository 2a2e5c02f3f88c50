"""Reads from this node's replica. Never writes: every change is a command.

Reads may trail the log by a few milliseconds; callers that need
read-after-write across nodes wait on a raft barrier first
(``?consistency=strong``). Rows come back as stored (``sqlite3.Row``);
presenting them is ``daemon/views.py``'s job. Every method blocks on SQLite:
call them off the event loop where the answer may be large.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from scheduler0.daemon.state.schema import (
    BACKFILL,
    JOB_BLOCK_BITS,
    NOT_SUCCEEDED,
    RUN_SECOND_SQL,
    connect,
    run_second,
    unsent_backfill_sql,
)
from scheduler0.errors import NotFound

UNSENT = unsent_backfill_sql()
"""Backfilled runs not sent yet (``executions_backfill_unsent``)."""
RECENT_RUNS = 256
"""A job's newest executions ``sent_elsewhere`` looks at: a run still in
flight is among them unless this many newer slots were recorded meanwhile."""
DELIVERY_HORIZON = 86_400.0
"""A run ``dispatched`` by another node longer ago than this (seconds) is not
waited for. A safety net, not a bound on deliveries: a live node keeps its
runs ``dispatched`` only while it delivers them (a job's retry policy may
back off for hours), and the leader declares a lost member's runs ``lost``
within seconds, so only a row whose sender will never report outlives it."""
BY_PROJECT = "executions INDEXED BY executions_backfill_unsent"
"""Without statistics SQLite may take ``executions_by_trigger`` instead: every
backfilled row of every project."""


def _executor_jobs(visible: Visible) -> tuple[str, tuple[str, ...]]:
    """The number of jobs calling back through executor ``e``
    (``jobs_by_executor``), of the ``visible`` projects only (None: every
    project's): a credential limited to some projects counts only theirs."""
    if visible is None:
        return "(SELECT COUNT(*) FROM jobs WHERE executor_id = e.id) AS jobs", ()
    return (
        "(SELECT COUNT(*) FROM jobs WHERE executor_id = e.id"
        " AND project_id IN (SELECT value FROM json_each(?))) AS jobs",
        (orjson.dumps(sorted(visible)).decode(),),
    )


class Page(NamedTuple):
    """One page of a list: the rows and where they sit in the whole."""

    total: int
    offset: int
    limit: int
    rows: list[sqlite3.Row]


Visible = frozenset[int] | None
"""The projects a caller may see: None for every project. Lists take it and
leave the others' rows out (their totals too)."""


def _visible(visible: Visible, column: str = "project_id") -> tuple[str, list[Any]]:
    """A WHERE clause (without WHERE) limiting ``column`` to ``visible``, or none."""
    if visible is None:
        return "", []
    return f"{column} IN (SELECT value FROM json_each(?))", [orjson.dumps(sorted(visible)).decode()]


def _where(clauses: list[str]) -> str:
    kept = [clause for clause in clauses if clause]
    return f"WHERE {' AND '.join(kept)}" if kept else ""


@dataclass(frozen=True)
class JobSearch:
    """What ``GET /jobs`` filters on besides the project: every given part must
    match. ``name`` exactly (the ``jobs_by_name`` index); each ``(key, value)``
    of ``labels`` (the ``job_labels_by_pair`` index); ``q`` a substring of the
    name, callback URL or spec, ignoring ASCII case (a scan of the rows the
    other parts leave)."""

    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    q: str | None = None

    def clauses(self, args: list[Any]) -> list[str]:
        """SQL conditions on ``jobs`` (their arguments appended to ``args``)."""
        out = []
        if self.name is not None:
            out.append("name = ?")
            args.append(self.name)
        for key, value in self.labels:
            out.append("id IN (SELECT job_id FROM job_labels WHERE key = ? AND value = ?)")
            args.extend((key, value))
        if self.q:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", self.q) + "%"
            out.append(
                "(name LIKE ? ESCAPE '\\' OR callback_url LIKE ? ESCAPE '\\'"
                " OR spec LIKE ? ESCAPE '\\')"
            )
            args.extend((pattern, pattern, pattern))
        return out


@dataclass(frozen=True)
class Order:
    """How a list is ordered: one of its ``ORDERS`` columns (None: its
    default), ascending or descending (None: its default direction)."""

    column: str | None = None
    descending: bool | None = None


ORDERS: dict[str, dict[str, str]] = {
    "projects": {"id": "id", "name": "name", "created_at": "id", "updated_at": "updated_at"},
    "credentials": {"id": "id", "created_at": "id", "updated_at": "updated_at"},
    "executors": {"id": "id", "name": "name", "created_at": "id", "updated_at": "updated_at"},
    "jobs": {
        "id": "id",
        "name": "name",
        "project_id": "project_id",
        "created_at": "id",
        "updated_at": "updated_at",
    },
    "executions": {"scheduled_at": RUN_SECOND_SQL, "id": "id", "created_at": "id"},
    "audit": {"id": "id", "at": "id", "created_at": "id"},
}
"""The columns each list may be ordered by (the whitelist: the only text an
``ORDER BY`` is made of), as SQL over its table. ``created_at`` orders by id:
rows are numbered in the order the replicated log creates them, while
``created_at`` is the proposing node's clock (nodes' clocks may differ a
little). Each column a large table is ordered by has an index
(``jobs_by_name_all``, ``jobs_by_updated``, ``jobs_by_project``,
``executions_by_second``), so a deep page walks an index instead of sorting
the table."""

DEFAULT_ORDERS: dict[str, tuple[str, bool]] = {
    "projects": ("id", False),
    "credentials": ("id", False),
    "executors": ("id", False),
    "jobs": ("id", False),
    "executions": ("scheduled_at", True),
    "audit": ("id", True),
}
"""Each list's order when none is asked for: by id, except executions, newest
run first. A direction given alone applies to the default column; a column
given alone is in the list's default direction."""


def order_by(table: str, order: Order | None, *, reverse: bool = False) -> str:
    """The ``ORDER BY`` clause of ``table``'s list: the column's SQL from
    ``ORDERS`` (a column not there raises ``KeyError``: the API checked it),
    then the id in the same direction, so equal values page stably.
    ``reverse``: the same order read from its end."""
    column, descending = DEFAULT_ORDERS[table]
    if order is not None:
        column = order.column if order.column is not None else column
        descending = order.descending if order.descending is not None else descending
    descending = descending != reverse
    expression = ORDERS[table][column]
    direction = "DESC" if descending else "ASC"
    tie = "" if expression == "id" else f", id {direction}"
    return f"ORDER BY {expression} {direction}{tie}"


_SCHEDULING_COLUMNS = (
    "id", "spec", "timezone", "anchor", "not_before", "last_fired_slot", "paused", "bucket",
    "next_run", "revision", "policy", "fired_count",
)  # fmt: skip
SCHEDULING_CHUNK = 5_000
"""Jobs the scheduler reads per step (``Queries.jobs_for_scheduling``)."""


JOB_PAGE_COLUMNS = (
    "id, project_id, spec, timezone, data, callback_url, executor_id, execution_type, paused,"
    " status_note, last_fired_slot, next_run, last_state, last_status_code, fired_count,"
    " success_count, failed_count, missed_count, created_at, updated_at, name, labels,"
    " created_by, modified_by, policy, anchor, not_before"
)
"""The columns a page of jobs shows (``views.job_out``'s, with what it needs to
compute a next run that is not kept): not the scheduler's own."""


def _page_ids(
    db: sqlite3.Connection,
    where: str,
    args: list[Any],
    order: Order | None,
    total: int,
    limit: int,
    offset: int,
) -> list[int]:
    """The ids of the jobs list's rows ``offset`` to ``offset + limit - 1``
    (``where``, ``order``) of ``total``, in order: read in the reversed order
    when the page is nearer the end, so the index walk skips at most half of
    the list (``SELECT id`` only: the order's index covers it)."""
    wanted = min(limit, total - offset)
    if wanted <= 0:
        return []
    from_end = total - offset - wanted
    reverse = from_end < offset
    sql = f"SELECT id FROM jobs {where} {order_by('jobs', order, reverse=reverse)} LIMIT ? OFFSET ?"
    ids = [row[0] for row in db.execute(sql, [*args, wanted, from_end if reverse else offset])]
    if reverse:
        ids.reverse()
    return ids


def _id_descending(order: Order | None) -> bool | None:
    """Whether the jobs list in ``order`` runs by descending id; None when
    it is not in id order."""
    column, descending = DEFAULT_ORDERS["jobs"]
    if order is not None:
        column = order.column if order.column is not None else column
        descending = order.descending if order.descending is not None else descending
    return descending if ORDERS["jobs"][column] == "id" else None


def _page_ids_by_block(
    db: sqlite3.Connection,
    clauses: list[str],
    args: list[Any],
    descending: bool,
    limit: int,
    offset: int,
) -> list[int]:
    """The ids of the jobs list's rows ``offset`` to ``offset + limit - 1`` in
    id order, when ``clauses`` (with ``args``) filter on the project alone:
    ``job_blocks`` says in which block of ids the row at ``offset`` lies and
    how many of the list come before that block, so the index walk starts at
    the block and skips fewer than ``2 ** JOB_BLOCK_BITS`` entries."""
    direction = "DESC" if descending else "ASC"
    blocks = db.execute(
        f"SELECT block, SUM(jobs) FROM job_blocks {_where(clauses)}"
        f" GROUP BY block ORDER BY block {direction}",
        args,
    )
    before = 0
    start: int | None = None
    for block, jobs in blocks:
        if before + jobs > offset:
            start = block
            break
        before += jobs
    if start is None:
        return []
    if descending:
        bound, first = "id < ?", (start + 1) << JOB_BLOCK_BITS
    else:
        bound, first = "id >= ?", start << JOB_BLOCK_BITS
    sql = (
        f"SELECT id FROM jobs {_where([*clauses, bound])} ORDER BY id {direction} LIMIT ? OFFSET ?"
    )
    return [row[0] for row in db.execute(sql, [*args, first, limit, offset - before])]


class Queries:
    """One read-only connection per thread.

    ``settle`` (the state machine's) writes the fires and results it holds in
    memory (``state/fire_buffer.py``): ``db`` calls it first, so a read sees
    every command applied before it. (Applied after it, fires may be written
    by a due flush before the read's statement runs, which keeps the rows
    still waiting for their result: one statement may then count a fire on
    its job that it does not find among the executions. The next ``db``
    writes it.) The reads that never look at what a fire or a
    result writes (a job's payload, runs ``lost`` or ``pending``, members, a
    credential by its key: every request's first read) use ``db_as_is`` and
    leave the fires held."""

    def __init__(self, db_path: Path, settle: Callable[[], None] | None = None) -> None:
        self._db_path = db_path
        self._settle = settle or (lambda: None)
        self._backfill_served = 0
        """The project ``backfill_due`` served last (the next round starts after it)."""
        self._local = threading.local()

    @property
    def db(self) -> sqlite3.Connection:
        self._settle()
        return self.db_as_is

    @property
    def db_as_is(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._db_path, writer=False)
            self._local.conn = conn
        return conn

    # -- projects --------------------------------------------------------------------

    def project(self, project_id: int) -> sqlite3.Row:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM projects WHERE id = ?", (project_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no project with id {project_id}")
        return row

    def project_by_name(self, name: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM projects WHERE name = ?", (name,)
        ).fetchone()
        return row

    def projects(
        self, limit: int, offset: int, visible: Visible = None, order: Order | None = None
    ) -> Page:
        clause, args = _visible(visible, "id")
        where = _where([clause])
        (total,) = self.db.execute(f"SELECT COUNT(*) FROM projects {where}", args).fetchone()
        rows = self.db.execute(
            f"SELECT * FROM projects {where} {order_by('projects', order)} LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return Page(total, offset, limit, rows)

    def existing_project_ids(self, ids: Sequence[int]) -> set[int]:
        return {
            row[0]
            for row in self.db.execute(
                "SELECT id FROM projects WHERE id IN (SELECT value FROM json_each(?))",
                (orjson.dumps(sorted(set(ids))).decode(),),
            )
        }

    # -- executors -------------------------------------------------------------------

    def executor(self, executor_id: int, visible: Visible = None) -> sqlite3.Row:
        """One executor with ``jobs``, the number of jobs (of ``visible``
        projects) using it."""
        jobs, params = _executor_jobs(visible)
        row: sqlite3.Row | None = self.db.execute(
            f"SELECT *, {jobs} FROM executors e WHERE id = ?", (*params, executor_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"no executor with id {executor_id}")
        return row

    def executors(
        self, limit: int, offset: int, order: Order | None = None, visible: Visible = None
    ) -> Page:
        (total,) = self.db.execute("SELECT COUNT(*) FROM executors").fetchone()
        jobs, params = _executor_jobs(visible)
        rows = self.db.execute(
            f"SELECT *, {jobs} FROM executors e {order_by('executors', order)} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return Page(total, offset, limit, rows)

    def existing_executor_ids(self, ids: Sequence[int]) -> set[int]:
        return {
            row[0]
            for row in self.db.execute(
                "SELECT id FROM executors WHERE id IN (SELECT value FROM json_each(?))",
                (orjson.dumps(sorted(set(ids))).decode(),),
            )
        }

    # -- credentials -----------------------------------------------------------------

    def credential(self, credential_id: int) -> sqlite3.Row:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM credentials WHERE id = ?", (credential_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no credential with id {credential_id}")
        return row

    def credential_by_key(self, api_key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db_as_is.execute(
            "SELECT id, secret_hash, archived, scopes, projects, expires_at FROM credentials"
            " WHERE api_key = ?",
            (api_key,),
        ).fetchone()
        return row

    def credentials(self, limit: int, offset: int, order: Order | None = None) -> Page:
        (total,) = self.db.execute("SELECT COUNT(*) FROM credentials").fetchone()
        rows = self.db.execute(
            f"SELECT * FROM credentials {order_by('credentials', order)} LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        return Page(total, offset, limit, rows)

    # -- jobs ---------------------------------------------------------------------------

    def job(self, job_id: int) -> sqlite3.Row:
        row = self.job_row(job_id)
        if row is None:
            raise NotFound(f"no job with id {job_id}")
        return row

    def job_row(self, job_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return row

    def job_project(self, job_id: int) -> int | None:
        """The project of job ``job_id`` (None: no such job)."""
        row = self.db.execute("SELECT project_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else int(row[0])

    def jobs_between(self, first: int, last: int) -> list[sqlite3.Row]:
        """The jobs with ids ``first`` to ``last`` that still exist, by id."""
        rows: list[sqlite3.Row] = self.db.execute(
            "SELECT * FROM jobs WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)
        ).fetchall()
        return rows

    def jobs(
        self,
        project_id: int | None,
        limit: int,
        offset: int,
        visible: Visible = None,
        search: JobSearch | None = None,
        order: Order | None = None,
    ) -> Page:
        """A page of jobs and the exact total, read in one transaction.

        The total of a list filtered by project alone (or by nothing, or by the
        caller's projects) is a sum of ``project_job_counts`` rows: one read,
        whatever the number of jobs. The page is found in two steps: the ids
        of its rows, by skipping ``offset`` entries of the index of its order
        (``ORDERS``: each index holds the project, the order's column and the
        id, so the skipping reads no row of the table), from whichever end of
        the list is nearer (the last page skips nothing), then those rows by
        id. A deep page thus costs at most half the list's index entries,
        never the rows before it. In id order (the default, or ``created_at``)
        with no filter but the project, the walk starts from the block of ids
        ``job_blocks`` places the page in, so any page costs about the same."""
        clause, args = _visible(visible)
        clauses = [clause]
        if project_id is not None:
            clauses.append("project_id = ?")
            args.append(project_id)
        searched = [] if search is None else search.clauses(args)
        clauses.extend(searched)
        where = _where(clauses)
        db = self.db
        db.execute("BEGIN")  # the total and the page of one state
        try:
            if searched:
                (total,) = db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()
            else:
                total = self._counted_jobs(project_id, visible)
            if offset <= limit:
                # Near the start the rows are read in order at once: skipping
                # at most a page costs no more than reading one.
                page: list[sqlite3.Row] = db.execute(
                    f"SELECT {JOB_PAGE_COLUMNS} FROM jobs {where} {order_by('jobs', order)}"
                    " LIMIT ? OFFSET ?",
                    [*args, limit, offset],
                ).fetchall()
                return Page(total, offset, limit, page)
            descending = _id_descending(order)
            if searched or descending is None or (project_id is None and visible is not None):
                ids = _page_ids(db, where, args, order, total, limit, offset)
            else:
                ids = _page_ids_by_block(db, clauses, args, descending, limit, offset)
            rows = {
                row["id"]: row
                for row in db.execute(
                    f"SELECT {JOB_PAGE_COLUMNS} FROM jobs"
                    " WHERE id IN (SELECT value FROM json_each(?))",
                    (orjson.dumps(ids).decode(),),
                )
            }
        finally:
            db.execute("COMMIT")
        return Page(total, offset, limit, [rows[i] for i in ids if i in rows])

    def _counted_jobs(self, project_id: int | None, visible: Visible) -> int:
        """The number of jobs of ``project_id`` (None: of every project), only
        those of ``visible`` projects, from ``project_job_counts``."""
        clause, args = _visible(visible)
        clauses = [clause]
        if project_id is not None:
            clauses.append("project_id = ?")
            args.append(project_id)
        (total,) = self.db.execute(
            f"SELECT COALESCE(SUM(jobs), 0) FROM project_job_counts {_where(clauses)}", args
        ).fetchone()
        return int(total)

    def jobs_for_scheduling(
        self, ids: Sequence[int] | None, buckets: Sequence[int]
    ) -> Iterator[dict[str, Any]]:
        """Jobs in ``buckets`` (all of them, or only ``ids``), by id, as dicts.

        Read ``SCHEDULING_CHUNK`` at a time, each chunk as one JSON array that
        SQLite builds in one step. The scheduler reads them on the event loop:
        row by row, every row's step released the GIL and waited to take it
        back from whichever thread held it (a batch being validated, apply),
        and the 1,000 rows of a new batch held the loop 200-350 ms for 25 ms
        of work. In chunks a whole bucket share is never in memory at once."""
        columns = ", ".join(f"'{c}', {c}" for c in _SCHEDULING_COLUMNS)
        # "+bucket": never walk the bucket index, which reads every remaining
        # row of each bucket and sorts them all for each chunk (quadratic: 13 s
        # of the 20 s a node spent loading 500,000 jobs); the id order reads
        # each row once, at most a full scan of the table for any buckets.
        where = "+bucket IN (SELECT value FROM json_each(?))"
        args: list[Any] = [orjson.dumps(list(buckets)).decode()]
        if ids is not None:
            where += " AND id IN (SELECT value FROM json_each(?))"
            args.append(orjson.dumps(list(ids)).decode())
        sql = (
            f"SELECT json_group_array(json_object({columns})), MAX(id) FROM"
            f" (SELECT {', '.join(_SCHEDULING_COLUMNS)} FROM jobs"
            f" WHERE {where} AND id > ? ORDER BY id LIMIT ?)"
        )
        after = 0
        while True:
            text, last = self.db.execute(sql, [*args, after, SCHEDULING_CHUNK]).fetchone()
            if last is None:
                return
            chunk: list[dict[str, Any]] = orjson.loads(text)
            yield from chunk
            after = last

    def due_before(self, buckets: Sequence[int], before: int, limit: int) -> list[int]:
        """Ids of the active jobs in ``buckets`` whose kept next run is
        earlier than ``before`` or unknown (NULL: an entry older than version
        3, a schedule changed since), unknown first, then soonest; at most
        ``limit``. One scan of the table, as one JSON array: ~0.2 s for
        1,000,000 jobs."""
        (text,) = self.db.execute(
            "SELECT json_group_array(id) FROM (SELECT id FROM jobs"
            " WHERE +bucket IN (SELECT value FROM json_each(?)) AND NOT paused"
            " AND (next_run IS NULL OR next_run < ?) ORDER BY next_run, id LIMIT ?)",
            (orjson.dumps(list(buckets)).decode(), before, limit),
        ).fetchone()
        ids: list[int] = orjson.loads(text)
        return ids

    def sent_elsewhere(self, job_id: int, node_id: int, now: float, grace: float) -> list[int]:
        """Slots of the job's newest executions (at most ``RECENT_RUNS``) that
        a sender other than this node may still be delivering: ``dispatched``
        by another node less than ``DELIVERY_HORIZON`` seconds ago, or
        ``lost`` within ``grace`` of ``now`` (adoption re-sends those)."""
        rows = self.db.execute(
            "SELECT slot, state, node_id, updated_at FROM (SELECT slot, state, node_id,"
            " updated_at FROM executions WHERE job_id = ? ORDER BY slot DESC LIMIT ?)"
            " WHERE state IN ('dispatched', 'lost') ORDER BY slot",
            (job_id, RECENT_RUNS),
        ).fetchall()
        return [
            slot
            for slot, state, sender, updated_at in rows
            if (state == "dispatched" and sender != node_id and now - updated_at < DELIVERY_HORIZON)
            or (state == "lost" and now - run_second(slot) <= grace)
        ]

    def fire_payloads(self, fires: Sequence[Sequence[int]]) -> dict[int, sqlite3.Row]:
        """Job rows for accepted fires, with where their callbacks go: the
        job's executor's URL, method and secret (version 5), or else the job's
        own ``callback_url``, ``POST`` and its project's signing secret (also
        for an executor without a secret of its own), and whether the job is
        paused."""
        rows = self.db_as_is.execute(
            "SELECT j.id, j.project_id, j.spec, j.timezone, j.data,"
            " COALESCE(e.webhook_url, j.callback_url) AS callback_url,"
            " COALESCE(e.webhook_method, 'POST') AS method,"
            " j.execution_type, j.policy, j.paused,"
            " COALESCE(e.webhook_secret, p.signing_secret) AS signing_secret"
            " FROM jobs j JOIN projects p ON p.id = j.project_id"
            " LEFT JOIN executors e ON e.id = j.executor_id"
            " WHERE j.id IN (SELECT value FROM json_each(?))",
            (orjson.dumps([f[0] for f in fires]).decode(),),
        ).fetchall()
        return {row[0]: row for row in rows}

    # -- executions ---------------------------------------------------------------------

    def executions(
        self,
        *,
        job_id: int | None = None,
        project_id: int | None = None,
        state: str | None = None,
        trigger: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
        visible: Visible = None,
        order: Order | None = None,
    ) -> Page:
        clause, args = _visible(visible)
        clauses = [clause] if clause else []
        # One job's runs are found through its (job_id, slot) index, whatever
        # else is asked: a unary + keeps the planner off the state and trigger
        # indexes, which would walk every execution in that state or trigger.
        other = "" if job_id is None else "+"
        for column, value in (("job_id", job_id), ("project_id", project_id), ("state", state)):
            if value is not None:
                clauses.append(f"{'' if column == 'job_id' else other}{column} = ?")
                args.append(value)
        if state not in (None, "success") and job_id is None:
            clauses.append(NOT_SUCCEEDED)  # the executions_not_succeeded index holds them
        if trigger == "schedule":
            # NULL: a run of the schedule (rows older than the column too).
            clauses.append("(trigger IS NULL OR trigger = 'schedule')")
        elif trigger is not None:
            clauses.append(f"{other}trigger = ?")  # the executions_by_trigger index
            args.append(trigger)
        if since is not None:
            clauses.append(f"{RUN_SECOND_SQL} >= ?")
            args.append(since)
        if until is not None:
            clauses.append(f"{RUN_SECOND_SQL} < ?")
            args.append(until)
        where = _where(clauses)
        (total,) = self.db.execute(f"SELECT COUNT(*) FROM executions {where}", args).fetchone()
        rows = self.db.execute(
            f"SELECT * FROM executions {where} {order_by('executions', order)} LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return Page(total, offset, limit, rows)

    def unsettled(
        self,
        state: str,
        node_id: int | None = None,
        *,
        backfill: bool = True,
        paused: bool = True,
        since: float | None = None,
    ) -> list[sqlite3.Row]:
        """Executions in ``state`` (``pending``, ``dispatched`` or ``lost``),
        optionally of one node; without the backfill ones when ``backfill`` is
        False (those are sent at their own pace: ``backfill_due``); without
        the scheduled runs of paused jobs when ``paused`` is False (a manual
        run, asked for explicitly, stays); only runs for ``since`` or later
        (their slot's second, or a manual run's) when given."""
        sql = (
            "SELECT job_id, slot, node_id, created_at FROM executions"
            f" WHERE state = ? AND {NOT_SUCCEEDED}"
        )
        args: list[Any] = [state]
        if node_id is not None:
            sql += " AND node_id = ?"
            args.append(node_id)
        if not backfill:
            sql += " AND trigger IS NOT ?"
            args.append(BACKFILL)
        if since is not None:
            sql += f" AND {RUN_SECOND_SQL} >= ?"
            args.append(since)
        if not paused:
            sql += (
                " AND NOT (slot >= 0 AND EXISTS"
                " (SELECT 1 FROM jobs j WHERE j.id = executions.job_id AND j.paused))"
            )
        # Held fires and results make no row ``lost`` or ``pending`` (a held
        # result may settle one): adoption's reads of those, twice a second,
        # go as written, and apply judges the proposals they lead to.
        db = self.db if state == "dispatched" else self.db_as_is
        return db.execute(sql, args).fetchall()

    def backfill_due(self, buckets: Iterable[int], limit: int) -> list[list[int]]:
        """Up to ``limit`` backfill executions still to send (``pending``, or
        ``lost`` on the way) of active jobs in ``buckets``: ``[job_id,
        slot]``, each project's oldest request first, and the projects in
        turn: each of ``P`` projects with runs waiting gets at most
        ``ceil(limit / P)`` of them, so one project's queue cannot hold
        another's back. Through ``executions_backfill_unsent``: the projects
        by one seek each, then each project's runs in id order."""
        projects = self.projects_with_unsent_backfill()
        if not projects:
            return []
        share = -(-limit // len(projects))
        # More projects than runs a round: each round starts after the last served.
        later = [p for p in projects if p > self._backfill_served]
        turn = later + projects[: len(projects) - len(later)]
        listed = orjson.dumps(sorted(buckets)).decode()
        due: list[list[int]] = []
        for project_id in turn[: max(1, limit)]:
            self._backfill_served = project_id
            rows = self.db_as_is.execute(
                "SELECT e.job_id, e.slot FROM executions AS e"
                " INDEXED BY executions_backfill_unsent JOIN jobs AS j ON j.id = e.job_id"
                f" WHERE e.project_id = ? AND {unsent_backfill_sql('e')}"
                " AND NOT j.paused AND j.bucket IN (SELECT value FROM json_each(?))"
                " ORDER BY e.id LIMIT ?",
                (project_id, listed, min(share, limit - len(due))),
            ).fetchall()
            due.extend([row[0], row[1]] for row in rows)
            if len(due) >= limit:
                break
        return due

    def projects_with_unsent_backfill(self) -> list[int]:
        """The projects with backfilled runs not sent yet, in id order: one
        index seek each (a loose scan of ``executions_backfill_unsent``)."""
        rows = self.db_as_is.execute(
            "WITH RECURSIVE p(id) AS ("
            f" SELECT MIN(project_id) FROM {BY_PROJECT} WHERE {UNSENT}"
            f" UNION ALL SELECT (SELECT MIN(project_id) FROM {BY_PROJECT}"
            f" WHERE {UNSENT} AND project_id > p.id) FROM p WHERE p.id IS NOT NULL"
            ") SELECT id FROM p WHERE id IS NOT NULL"
        ).fetchall()
        return [row[0] for row in rows]

    def unsent_backfill(self, project_id: int) -> int:
        """The project's backfilled runs not sent yet (its queue)."""
        (count,) = self.db.execute(
            f"SELECT COUNT(*) FROM {BY_PROJECT} WHERE {UNSENT} AND project_id = ?",
            (project_id,),
        ).fetchone()
        return int(count)

    # -- the audit log ----------------------------------------------------------------

    def audit_records(
        self,
        *,
        kind: str | None = None,
        project_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
        visible: Visible = None,
        every_record: bool = False,
        order: Order | None = None,
    ) -> Page:
        """Audit records, newest first. ``every_record`` (operators): records
        of no project (credentials) too; otherwise only records of a project
        in ``visible`` (None: of any project)."""
        clause, args = _visible(visible)
        clauses = [clause]
        if not every_record:
            clauses.append("project_id IS NOT NULL")
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if project_id is not None:
            clauses.append("project_id = ?")
            args.append(project_id)
        where = _where(clauses)
        (total,) = self.db.execute(f"SELECT COUNT(*) FROM audit_log {where}", args).fetchone()
        rows = self.db.execute(
            f"SELECT * FROM audit_log {where} {order_by('audit', order)} LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return Page(total, offset, limit, rows)

    def counts(self) -> dict[str, int]:
        db = self.db
        out = {
            "projects": db.execute("SELECT COUNT(*) FROM projects").fetchone()[0],
            "jobs": self._counted_jobs(None, None),
            "executions": db.execute("SELECT COUNT(*) FROM executions").fetchone()[0],
        }
        return out

    def max_job_id(self) -> int:
        (top,) = self.db_as_is.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()
        return int(top)

    def members(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db_as_is.execute("SELECT * FROM members ORDER BY node_id")]

    def departed_member_ids(self) -> list[int]:
        """Nodes removed from the cluster (and not added back since)."""
        return [
            r[0] for r in self.db_as_is.execute("SELECT node_id FROM departed_members ORDER BY 1")
        ]
