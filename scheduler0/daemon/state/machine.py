"""The state machine: applies commands to this node's SQLite replica.

Rules every handler keeps (the raft log depends on them):

* Deterministic. A handler reads only the command and the database: never the
  clock, randomness or node-local settings. Row ids come from the database in
  log order, so they are the same on every node.
* One transaction per command. A handler that finds the command invalid
  raises a ``Scheduler0Error``; ``apply`` rolls the transaction back and
  returns the error as a value. ``apply`` itself never raises: an exception
  escaping a replicated method is retried by pysyncobj on every tick, forever,
  on every node.
* Results are small: they are computed on every node but only the proposer
  reads them.

After a command commits, ``on_change`` hears which jobs or which assignment
changed, so the scheduler can refresh what it holds in memory. That is a side
effect outside the replicated state and may lag it.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.schema import BUCKETS, bucket_of, connect
from scheduler0.errors import (
    Conflict,
    FieldError,
    NotFound,
    Scheduler0Error,
    ValidationFailed,
)

log = logging.getLogger(__name__)

ChangeListener = Callable[[str, Any], None]
"""``(kind, detail)``: ``("jobs", [ids])``, ``("assignment", epoch)``, ``("reset", None)``."""


class AssignmentView(Protocol):
    """The bucket assignment as a node has applied it (``StateMachine`` is one):
    bucket ``i`` is owned by node ``owners[i]`` since ``epoch``."""

    epoch: int
    owners: list[int]


JOB_COLUMNS = ("spec", "timezone", "data", "callback_url", "execution_type", "anchor", "not_before")


class StateMachine:
    def __init__(self, db_path: Path, on_change: ChangeListener | None = None) -> None:
        self.db_path = db_path
        self._conn = connect(db_path, writer=True)
        self._conn.row_factory = None  # plain tuples: apply reads by position
        self._on_change = on_change or (lambda kind, detail: None)
        self._lock = threading.Lock()
        self.epoch = 0
        self.owners: list[int] = [0] * BUCKETS
        self.applied_commands = 0
        self._load_assignment()
        self._handlers: dict[type[c.Command], Callable[[sqlite3.Connection, Any], Any]] = {
            c.Noop: lambda db, cmd: None,
            c.ProjectCreated: self._project_created,
            c.ProjectUpdated: self._project_updated,
            c.ProjectDeleted: self._project_deleted,
            c.CredentialCreated: self._credential_created,
            c.CredentialArchived: self._credential_archived,
            c.CredentialDeleted: self._credential_deleted,
            c.JobsCreated: self._jobs_created,
            c.JobUpdated: self._job_updated,
            c.JobDeleted: self._job_deleted,
            c.JobPaused: self._job_paused,
            c.JobTriggered: self._job_triggered,
            c.SlotsFired: self._slots_fired,
            c.ResultsRecorded: self._results_recorded,
            c.AssignmentChanged: self._assignment_changed,
            c.MemberJoined: self._member_joined,
            c.MemberLeft: self._member_left,
            c.ExecutionsLost: self._executions_lost,
            c.ExecutionsRedispatched: self._executions_redispatched,
            c.ExecutionsPruned: self._executions_pruned,
        }
        self._pending_changes: list[tuple[str, Any]] = []

    # -- the replicated entry point -------------------------------------------------

    def apply(self, payload: bytes) -> dict[str, Any]:
        """Apply one encoded command. Returns ``{"ok": result}`` or ``{"error": {...}}``."""
        with self._lock:
            self.applied_commands += 1
            try:
                command = c.decode(payload)
            except c.UndecodableCommand as exc:
                log.error("skipping undecodable command: %s", exc)
                return {"error": Scheduler0Error(f"undecodable command: {exc}").to_dict()}
            handler = self._handlers[type(command)]
            db = self._conn
            self._pending_changes = []
            try:
                db.execute("BEGIN")
                result = handler(db, command)
                db.execute("COMMIT")
            except Scheduler0Error as exc:
                db.execute("ROLLBACK")
                return {"error": exc.to_dict()}
            except Exception as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                log.exception("apply of %s failed; rolled back", command.type_name)
                return {"error": Scheduler0Error(f"apply failed: {exc}").to_dict()}
            changes = self._pending_changes
        for kind, detail in changes:
            self._notify(kind, detail)
        return {"ok": result}

    def _notify(self, kind: str, detail: Any) -> None:
        try:
            self._on_change(kind, detail)
        except Exception:  # a listener must never break apply
            log.exception("change listener failed")

    def _changed(self, kind: str, detail: Any) -> None:
        self._pending_changes.append((kind, detail))

    # -- snapshots -------------------------------------------------------------------

    def save_snapshot(self, path: str, raft_data: Any) -> None:
        """Write the whole database plus pysyncobj's own data to ``path``.

        This runs on the raft thread and holds up every apply meanwhile, so the
        copy is not fsynced: like pysyncobj's own journal (an mmap it never
        msyncs) it survives a process crash, not a power cut."""
        started = time.perf_counter()
        with self._lock:
            dest = sqlite3.connect(path)
            try:
                dest.execute("PRAGMA synchronous=OFF")
                self._conn.backup(dest)
                dest.execute("PRAGMA journal_mode=DELETE")
                dest.execute("CREATE TABLE IF NOT EXISTS _raft (data BLOB NOT NULL)")
                dest.execute("DELETE FROM _raft")
                dest.execute("INSERT INTO _raft (data) VALUES (?)", (pickle.dumps(raft_data),))
                dest.commit()
            finally:
                dest.close()
        log.info(
            "snapshot written: %.1f MB in %.2f s",
            os.path.getsize(path) / 1e6,
            time.perf_counter() - started,
        )

    def load_snapshot(self, path: str) -> Any:
        """Replace the database with the snapshot at ``path``; return pysyncobj's data."""
        with self._lock:
            src = sqlite3.connect(path)
            try:
                row = src.execute("SELECT data FROM _raft").fetchone()
                raft_data = pickle.loads(row[0])
                src.backup(self._conn)
            finally:
                src.close()
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("DROP TABLE IF EXISTS _raft")
            self._load_assignment()
        self._notify("reset", None)
        return raft_data

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- cached replicated values ---------------------------------------------------------

    def _load_assignment(self) -> None:
        rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        self.epoch = int(rows.get("epoch", 0))
        owners = rows.get("owners")
        self.owners = orjson.loads(owners) if owners else [0] * BUCKETS

    # -- projects ---------------------------------------------------------------------

    def _project_created(self, db: sqlite3.Connection, cmd: c.ProjectCreated) -> dict[str, Any]:
        if db.execute("SELECT 1 FROM projects WHERE name = ?", (cmd.name,)).fetchone():
            raise Conflict(
                f"a project named {cmd.name!r} already exists",
                [FieldError("name", "already taken")],
            )
        cur = db.execute(
            "INSERT INTO projects (name, description, signing_secret, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (cmd.name, cmd.description, cmd.signing_secret, cmd.now, cmd.now),
        )
        return {"id": cur.lastrowid}

    def _project_updated(self, db: sqlite3.Connection, cmd: c.ProjectUpdated) -> dict[str, Any]:
        _require(db, "projects", cmd.project_id, "project")
        if cmd.name is not None:
            clash = db.execute(
                "SELECT 1 FROM projects WHERE name = ? AND id != ?", (cmd.name, cmd.project_id)
            ).fetchone()
            if clash:
                raise Conflict(
                    f"a project named {cmd.name!r} already exists",
                    [FieldError("name", "already taken")],
                )
        db.execute(
            "UPDATE projects SET name = COALESCE(?, name), description = COALESCE(?, description),"
            " updated_at = ? WHERE id = ?",
            (cmd.name, cmd.description, cmd.now, cmd.project_id),
        )
        return {"id": cmd.project_id}

    def _project_deleted(self, db: sqlite3.Connection, cmd: c.ProjectDeleted) -> dict[str, Any]:
        _require(db, "projects", cmd.project_id, "project")
        (jobs,) = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE project_id = ?", (cmd.project_id,)
        ).fetchone()
        if jobs:
            raise Conflict(f"project {cmd.project_id} still has {jobs} job(s); delete them first")
        db.execute("DELETE FROM projects WHERE id = ?", (cmd.project_id,))
        return {"id": cmd.project_id}

    # -- credentials --------------------------------------------------------------------

    def _credential_created(
        self, db: sqlite3.Connection, cmd: c.CredentialCreated
    ) -> dict[str, Any]:
        cur = db.execute(
            "INSERT INTO credentials (api_key, secret_hash, description, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (cmd.api_key, cmd.secret_hash, cmd.description, cmd.now, cmd.now),
        )
        return {"id": cur.lastrowid}

    def _credential_archived(
        self, db: sqlite3.Connection, cmd: c.CredentialArchived
    ) -> dict[str, Any]:
        _require(db, "credentials", cmd.credential_id, "credential")
        db.execute(
            "UPDATE credentials SET archived = ?, updated_at = ? WHERE id = ?",
            (int(cmd.archived), cmd.now, cmd.credential_id),
        )
        return {"id": cmd.credential_id}

    def _credential_deleted(
        self, db: sqlite3.Connection, cmd: c.CredentialDeleted
    ) -> dict[str, Any]:
        _require(db, "credentials", cmd.credential_id, "credential")
        db.execute("DELETE FROM credentials WHERE id = ?", (cmd.credential_id,))
        return {"id": cmd.credential_id}

    # -- jobs -------------------------------------------------------------------------------

    def _jobs_created(self, db: sqlite3.Connection, cmd: c.JobsCreated) -> dict[str, Any]:
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
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
        first = (row[0] if row else 0) + 1
        db.executemany(
            "INSERT INTO jobs (id, project_id, bucket, spec, timezone, data, callback_url,"
            " execution_type, anchor, not_before, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    first + i,
                    job["project_id"],
                    bucket_of(first + i),
                    job["spec"],
                    job["timezone"],
                    job.get("data"),
                    job["callback_url"],
                    job.get("execution_type", "http"),
                    job["anchor"],
                    job["anchor"],
                    cmd.now,
                    cmd.now,
                )
                for i, job in enumerate(cmd.jobs)
            ),
        )
        ids = list(range(first, first + len(cmd.jobs)))
        self._changed("jobs", ids)
        return {"ids": [first, first + len(cmd.jobs) - 1] if ids else []}

    def _job_updated(self, db: sqlite3.Connection, cmd: c.JobUpdated) -> dict[str, Any]:
        _require(db, "jobs", cmd.job_id, "job")
        changes = {k: v for k, v in cmd.changes.items() if k in JOB_COLUMNS}
        if changes:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            db.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
                (*changes.values(), cmd.now, cmd.job_id),
            )
        self._changed("jobs", [cmd.job_id])
        return {"id": cmd.job_id}

    def _job_deleted(self, db: sqlite3.Connection, cmd: c.JobDeleted) -> dict[str, Any]:
        _require(db, "jobs", cmd.job_id, "job")
        db.execute("DELETE FROM jobs WHERE id = ?", (cmd.job_id,))
        db.execute("DELETE FROM executions WHERE job_id = ?", (cmd.job_id,))
        self._changed("jobs", [cmd.job_id])
        return {"id": cmd.job_id}

    def _job_paused(self, db: sqlite3.Connection, cmd: c.JobPaused) -> dict[str, Any]:
        _require(db, "jobs", cmd.job_id, "job")
        # Resuming skips the slots that fell due while paused: they were not
        # missed, they were not wanted.
        db.execute(
            "UPDATE jobs SET paused = ?, updated_at = ?,"
            " not_before = CASE WHEN ? THEN not_before ELSE ? END WHERE id = ?",
            (int(cmd.paused), cmd.now, int(cmd.paused), int(cmd.now), cmd.job_id),
        )
        self._changed("jobs", [cmd.job_id])
        return {"id": cmd.job_id, "paused": cmd.paused}

    def _job_triggered(self, db: sqlite3.Connection, cmd: c.JobTriggered) -> dict[str, Any]:
        row = db.execute("SELECT project_id FROM jobs WHERE id = ?", (cmd.job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job with id {cmd.job_id}")
        cur = db.execute(
            "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, created_at,"
            " updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
            (cmd.job_id, row[0], cmd.slot, cmd.now, cmd.now),
        )
        if not cur.rowcount:
            raise Conflict(f"job {cmd.job_id} already has a run at slot {cmd.slot}")
        return {"job_id": cmd.job_id, "slot": cmd.slot}

    # -- firing -------------------------------------------------------------------------------

    def _slots_fired(self, db: sqlite3.Connection, cmd: c.SlotsFired) -> dict[str, Any]:
        """Accept a slot only if the job is active, its bucket belongs to the
        proposing node in the CURRENT assignment, and the slot is later than the
        job's last fired slot. Missed slots advance the job the same way.

        The proposer's epoch is recorded but not required to be current: a
        bucket that did not move in a reassignment keeps firing, and a slot is
        still accepted at most once, because acceptance is decided here in log
        order against ``last_fired_slot``."""
        ids = {entry[0] for entry in cmd.fires} | {entry[0] for entry in cmd.missed}
        jobs = {
            row[0]: [row[1], row[2], row[3]]
            for row in db.execute(
                "SELECT id, project_id, paused, last_fired_slot FROM jobs"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (orjson.dumps(sorted(ids)).decode(),),
            )
        }
        owners = self.owners
        node_id = cmd.node_id

        def owned(job_id: int) -> list[Any] | None:
            job = jobs.get(job_id)
            if job is None or job[1] or owners[bucket_of(job_id)] != node_id:
                return None
            return job

        missed_rows: list[tuple[Any, ...]] = []
        missed_counts: dict[int, int] = {}
        for job_id, slots, uncounted in cmd.missed:
            job = owned(job_id)
            if job is None:
                continue
            fresh = [s for s in slots if job[2] is None or s > job[2]]
            if not fresh:
                continue
            missed_rows.extend(
                (job_id, job[0], s, "missed", node_id, cmd.epoch, cmd.now, cmd.now) for s in fresh
            )
            job[2] = max(fresh)
            missed_counts[job_id] = len(fresh) + int(uncounted)

        accepted: list[list[int]] = []
        runs: list[tuple[int, int, list[int]]] = []  # (project, slot, ids), in fire order
        by_slot: dict[int, list[int]] = {}
        for job_id, slot in cmd.fires:
            job = owned(job_id)
            if job is None or (job[2] is not None and slot <= job[2]):
                continue
            job[2] = slot
            accepted.append([job_id, slot])
            if runs and runs[-1][0] == job[0] and runs[-1][1] == slot:
                runs[-1][2].append(job_id)
            else:
                runs.append((job[0], slot, [job_id]))
            by_slot.setdefault(slot, []).append(job_id)

        insert = (
            "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, node_id, epoch,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if missed_rows:
            db.executemany(insert, missed_rows)
            db.executemany(
                "UPDATE jobs SET missed_count = missed_count + ?, last_fired_slot = ?,"
                " last_state = 'missed' WHERE id = ?",
                ((n, jobs[j][2], j) for j, n in missed_counts.items()),
            )
        # Rows are inserted in the order of ``fires`` (row ids are replicated
        # state). A tick's fires come sorted by slot, so they form a few runs
        # of one (project, slot): one set-based statement per run instead of
        # one per row keeps apply cheap on every node. Many short runs (many
        # projects interleaved) go as one statement over (job, project, slot).
        if len(runs) <= _MAX_RUN_STATEMENTS:
            for project_id, slot, group in runs:
                db.execute(
                    "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, node_id,"
                    " epoch, created_at, updated_at) SELECT value, ?, ?, 'dispatched', ?, ?, ?, ?"
                    " FROM json_each(?) ORDER BY key",
                    (project_id, slot, node_id, cmd.epoch, cmd.now, cmd.now, _json_ids(group)),
                )
        elif runs:
            triples = [[j, project_id, slot] for project_id, slot, group in runs for j in group]
            db.execute(
                "INSERT OR IGNORE INTO executions (job_id, project_id, slot, state, node_id,"
                " epoch, created_at, updated_at) SELECT value ->> 0, value ->> 1, value ->> 2,"
                " 'dispatched', ?, ?, ?, ? FROM json_each(?) ORDER BY key",
                (node_id, cmd.epoch, cmd.now, cmd.now, orjson.dumps(triples).decode()),
            )
        # Ascending slots: a job accepted twice in one command ends on its latest.
        for slot in sorted(by_slot):
            db.execute(
                "UPDATE jobs SET last_fired_slot = ?, fired_count = fired_count + 1,"
                " last_state = 'dispatched' WHERE id IN (SELECT value FROM json_each(?))",
                (slot, _json_ids(by_slot[slot])),
            )
        return {"accepted": accepted}

    def _results_recorded(self, db: sqlite3.Connection, cmd: c.ResultsRecorded) -> dict[str, Any]:
        """Version-1 ``results`` row by row, exactly as version 1 applied them
        (journals replay them); ``groups`` with one statement per table each:
        every fire of one POST shares its outcome."""
        if cmd.results:
            self._legacy_results(db, cmd)
        for slot, state, code, attempts, latency, error, ids in cmd.groups:
            listed = _json_ids(ids)
            db.execute(
                "UPDATE executions SET state = ?, status_code = ?, attempts = ?, latency_ms = ?,"
                " error = ?, updated_at = ? WHERE slot = ?"
                " AND job_id IN (SELECT value FROM json_each(?))",
                (state, code, attempts, latency, error, cmd.now, slot, listed),
            )
            ok = state == "success"
            db.execute(
                "UPDATE jobs SET success_count = success_count + ?,"
                " failed_count = failed_count + ?,"
                " last_state = CASE WHEN last_fired_slot = ? THEN ? ELSE last_state END,"
                " last_status_code ="
                " CASE WHEN last_fired_slot = ? THEN ? ELSE last_status_code END,"
                " last_finished_at = ? WHERE id IN (SELECT value FROM json_each(?))",
                (int(ok), int(not ok), slot, state, slot, code, cmd.now, listed),
            )
        return {"recorded": len(cmd.results) + sum(len(g[6]) for g in cmd.groups)}

    def _legacy_results(self, db: sqlite3.Connection, cmd: c.ResultsRecorded) -> None:
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

    def _executions_lost(self, db: sqlite3.Connection, cmd: c.ExecutionsLost) -> dict[str, Any]:
        db.executemany(
            "UPDATE executions SET state = 'lost', updated_at = ?"
            " WHERE job_id = ? AND slot = ? AND state = 'dispatched'",
            ((cmd.now, job_id, slot) for job_id, slot in cmd.executions),
        )
        return {"lost": len(cmd.executions)}

    def _executions_redispatched(
        self, db: sqlite3.Connection, cmd: c.ExecutionsRedispatched
    ) -> dict[str, Any]:
        """Hand ``lost`` or ``pending`` executions to the current owner of their
        bucket, once."""
        accepted = []
        for job_id, slot in cmd.executions:
            if self.owners[bucket_of(job_id)] != cmd.node_id:
                continue
            cur = db.execute(
                "UPDATE executions SET state = 'dispatched', node_id = ?, updated_at = ?"
                " WHERE job_id = ? AND slot = ? AND state IN ('lost', 'pending')",
                (cmd.node_id, cmd.now, job_id, slot),
            )
            if cur.rowcount:
                accepted.append([job_id, slot])
        return {"accepted": accepted}

    def _executions_pruned(self, db: sqlite3.Connection, cmd: c.ExecutionsPruned) -> dict[str, Any]:
        before = db.total_changes
        (top,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM executions").fetchone()
        db.execute(
            "DELETE FROM executions WHERE id <= ? AND state != 'dispatched'",
            (top - cmd.keep_rows,),
        )
        db.execute(
            "DELETE FROM executions WHERE created_at < ? AND state != 'dispatched'", (cmd.before,)
        )
        db.execute(
            "DELETE FROM executions WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER"
            " (PARTITION BY job_id ORDER BY slot DESC) AS rn FROM executions"
            " WHERE job_id BETWEEN ? AND ?) WHERE rn > ?)",
            (cmd.job_id_from, cmd.job_id_to, cmd.per_job),
        )
        return {"deleted": db.total_changes - before}

    # -- cluster -------------------------------------------------------------------------------

    def _assignment_changed(
        self, db: sqlite3.Connection, cmd: c.AssignmentChanged
    ) -> dict[str, Any]:
        if cmd.epoch <= self.epoch:
            raise Conflict(f"epoch {cmd.epoch} is not newer than {self.epoch}")
        if len(cmd.owners) != BUCKETS:
            raise ValidationFailed(f"assignment must cover {BUCKETS} buckets")
        db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("epoch", str(cmd.epoch)), ("owners", orjson.dumps(cmd.owners).decode())],
        )
        self.epoch = cmd.epoch
        self.owners = list(cmd.owners)
        self._changed("assignment", cmd.epoch)
        return {"epoch": cmd.epoch}

    def _member_joined(self, db: sqlite3.Connection, cmd: c.MemberJoined) -> dict[str, Any]:
        db.execute(
            "INSERT INTO members (node_id, address, raft_address, joined_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(node_id) DO UPDATE SET address = excluded.address,"
            " raft_address = excluded.raft_address",
            (cmd.node_id, cmd.address, cmd.raft_address, cmd.now),
        )
        self._changed("members", cmd.node_id)
        return {"node_id": cmd.node_id}

    def _member_left(self, db: sqlite3.Connection, cmd: c.MemberLeft) -> dict[str, Any]:
        db.execute("DELETE FROM members WHERE node_id = ?", (cmd.node_id,))
        self._changed("members", cmd.node_id)
        return {"node_id": cmd.node_id}


def _require(db: sqlite3.Connection, table: str, row_id: int, noun: str) -> None:
    if not db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone():
        raise NotFound(f"no {noun} with id {row_id}")


_MAX_RUN_STATEMENTS = 16
"""Above this many (project, slot) runs in one ``SlotsFired``, one statement."""


def _json_ids(ids: list[int]) -> str:
    return orjson.dumps(ids).decode()


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
