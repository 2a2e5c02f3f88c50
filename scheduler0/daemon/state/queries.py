"""Reads from this node's replica. Never writes: every change is a command.

Reads may trail the log by a few milliseconds; callers that need
read-after-write across nodes wait on a raft barrier first
(``?consistency=strong``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from scheduler0.daemon.scheduling.cron import Schedule, parse_schedule
from scheduler0.daemon.state.schema import connect, execution_id
from scheduler0.errors import NotFound

EXECUTION_STATES = ("pending", "dispatched", "success", "failed", "missed", "lost")


def iso(ts: float | int | None) -> str | None:
    """UTC ISO 8601 with a Z; whole seconds stay whole (slots), others keep microseconds."""
    if ts is None:
        return None
    if isinstance(ts, int):
        return _iso_seconds(ts)
    return _iso_micro(ts)


@lru_cache(maxsize=1024)
def _iso_micro(ts: float) -> str:
    """Cached: the rows of one command share their timestamps."""
    whole, micro = divmod(round(ts * 1_000_000), 1_000_000)
    return f"{_iso_seconds(whole)[:-1]}.{micro:06d}Z"


@lru_cache(maxsize=8192)
def _iso_seconds(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@lru_cache(maxsize=8192)
def _schedule(spec: str, timezone: str, anchor: int) -> Schedule | None:
    try:
        return parse_schedule(spec, timezone, anchor)
    except ValueError:
        return None


def decode_data(raw: str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


class Queries:
    """One read-only connection per thread."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._local = threading.local()

    @property
    def db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._db_path, writer=False)
            self._local.conn = conn
        return conn

    # -- projects --------------------------------------------------------------------

    def project(self, project_id: int, *, with_secret: bool = True) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM projects WHERE id = ?", (project_id,)).fetchone()
        if row is None:
            raise NotFound(f"no project with id {project_id}")
        return _project(row, with_secret)

    def project_by_name(self, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        return None if row is None else _project(row, True)

    def projects(self, limit: int, offset: int) -> dict[str, Any]:
        (total,) = self.db.execute("SELECT COUNT(*) FROM projects").fetchone()
        rows = self.db.execute(
            "SELECT * FROM projects ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
        ).fetchall()
        return _page(total, limit, offset, "projects", [_project(r, True) for r in rows])

    def existing_project_ids(self, ids: Sequence[int]) -> set[int]:
        return {
            row[0]
            for row in self.db.execute(
                "SELECT id FROM projects WHERE id IN (SELECT value FROM json_each(?))",
                (orjson.dumps(sorted(set(ids))).decode(),),
            )
        }

    # -- credentials -----------------------------------------------------------------

    def credential(self, credential_id: int) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM credentials WHERE id = ?", (credential_id,)).fetchone()
        if row is None:
            raise NotFound(f"no credential with id {credential_id}")
        return _credential(row)

    def credential_by_key(self, api_key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT id, secret_hash, archived FROM credentials WHERE api_key = ?", (api_key,)
        ).fetchone()
        return row

    def credentials(self, limit: int, offset: int) -> dict[str, Any]:
        (total,) = self.db.execute("SELECT COUNT(*) FROM credentials").fetchone()
        rows = self.db.execute(
            "SELECT * FROM credentials ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
        ).fetchall()
        return _page(total, limit, offset, "credentials", [_credential(r) for r in rows])

    # -- jobs ---------------------------------------------------------------------------

    def job(self, job_id: int) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job with id {job_id}")
        return job_out(row)

    def job_row(self, job_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return row

    def jobs_range(self, first: int, last: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM jobs WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)
        ).fetchall()
        return [job_out(r) for r in rows]

    def jobs(self, project_id: int | None, limit: int, offset: int) -> dict[str, Any]:
        where, args = ("WHERE project_id = ?", [project_id]) if project_id is not None else ("", [])
        (total,) = self.db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()
        rows = self.db.execute(
            f"SELECT * FROM jobs {where} ORDER BY id LIMIT ? OFFSET ?", [*args, limit, offset]
        ).fetchall()
        return _page(total, limit, offset, "jobs", [job_out(r) for r in rows])

    def jobs_for_scheduling(self, ids: Sequence[int] | None, buckets: Sequence[int]) -> list[Any]:
        """Active jobs in ``buckets`` (all of them, or only ``ids``)."""
        sql = (
            "SELECT id, spec, timezone, anchor, not_before, last_fired_slot, paused, bucket"
            " FROM jobs"
            " WHERE bucket IN (SELECT value FROM json_each(?))"
        )
        args: list[Any] = [orjson.dumps(list(buckets)).decode()]
        if ids is not None:
            sql += " AND id IN (SELECT value FROM json_each(?))"
            args.append(orjson.dumps(list(ids)).decode())
        return self.db.execute(sql, args).fetchall()

    def fire_payloads(self, fires: Sequence[Sequence[int]]) -> dict[int, sqlite3.Row]:
        """Job rows (with their project's signing secret) for accepted fires."""
        rows = self.db.execute(
            "SELECT j.id, j.project_id, j.spec, j.timezone, j.data, j.callback_url,"
            " j.execution_type, p.signing_secret FROM jobs j JOIN projects p"
            " ON p.id = j.project_id WHERE j.id IN (SELECT value FROM json_each(?))",
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
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("job_id", job_id), ("project_id", project_id), ("state", state)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            clauses.append("slot >= ?")
            args.append(since)
        if until is not None:
            clauses.append("slot < ?")
            args.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        (total,) = self.db.execute(f"SELECT COUNT(*) FROM executions {where}", args).fetchone()
        rows = self.db.execute(
            f"SELECT * FROM executions {where} ORDER BY slot DESC, id DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return _page(total, limit, offset, "executions", [execution_out(r) for r in rows])

    def unsettled(self, state: str, node_id: int | None = None) -> list[sqlite3.Row]:
        """Executions in ``state`` (``pending``, ``dispatched`` or ``lost``),
        optionally of one node."""
        sql = "SELECT job_id, slot, node_id, created_at FROM executions WHERE state = ?"
        args: list[Any] = [state]
        if node_id is not None:
            sql += " AND node_id = ?"
            args.append(node_id)
        return self.db.execute(sql, args).fetchall()

    def counts(self) -> dict[str, int]:
        db = self.db
        out = {
            "projects": db.execute("SELECT COUNT(*) FROM projects").fetchone()[0],
            "jobs": db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0],
            "executions": db.execute("SELECT COUNT(*) FROM executions").fetchone()[0],
        }
        return out

    def max_job_id(self) -> int:
        (top,) = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()
        return int(top)

    def members(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM members ORDER BY node_id")]


def _page(total: int, limit: int, offset: int, name: str, items: list[Any]) -> dict[str, Any]:
    return {"total": total, "offset": offset, "limit": limit, name: items}


def _project(row: sqlite3.Row, with_secret: bool) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if with_secret:
        out["signing_secret"] = row["signing_secret"]
    return out


def _credential(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "api_key": row["api_key"],
        "description": row["description"],
        "archived": bool(row["archived"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def new_job_row(job_id: int, job: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The row ``JobsCreated`` writes for ``job``: lets the API answer without
    reading it back. Keep in step with ``StateMachine._jobs_created``."""
    return {
        **job,
        "id": job_id,
        "paused": 0,
        "not_before": job["anchor"],
        "last_fired_slot": None,
        "last_state": None,
        "last_status_code": None,
        "fired_count": 0,
        "success_count": 0,
        "failed_count": 0,
        "missed_count": 0,
        "created_at": now,
        "updated_at": now,
    }


def job_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "spec": row["spec"],
        "timezone": row["timezone"],
        "data": decode_data(row["data"]),
        "callback_url": row["callback_url"],
        "execution_type": row["execution_type"],
        "paused": bool(row["paused"]),
        "last_execution_date": iso(row["last_fired_slot"]),
        "next_run_at": None if row["paused"] else iso(next_run(row)),
        "last_state": row["last_state"],
        "last_status_code": row["last_status_code"],
        "fired_count": row["fired_count"],
        "success_count": row["success_count"],
        "failed_count": row["failed_count"],
        "missed_count": row["missed_count"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def next_run(row: Mapping[str, Any]) -> int | None:
    """The next slot on the job's grid after its last fired slot (or its start)."""
    schedule = _schedule(row["spec"], row["timezone"], row["anchor"])
    if schedule is None:
        return None
    base = max(row["not_before"], row["last_fired_slot"] or row["not_before"])
    return schedule.next_after(base)


def execution_out(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "execution_id": execution_id(row["job_id"], row["slot"]),
        "job_id": row["job_id"],
        "project_id": row["project_id"],
        "scheduled_at": iso(row["slot"]),
        "slot": row["slot"],
        "state": row["state"],
        "node_id": row["node_id"],
        "epoch": row["epoch"],
        "attempts": row["attempts"],
        "status_code": row["status_code"],
        "latency_ms": row["latency_ms"],
        "error": row["error"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
