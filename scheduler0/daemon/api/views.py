"""What the API shows of stored rows: the JSON shape of projects, credentials,
jobs, executions and pages. Presentation only: no reads, no writes.

``next_run_at`` is the next run kept in state (the proposer of each command
that moves it computes it once): a read computes nothing per row. Only a job
whose next run is unknown (rows written by commands older than version 3, or
a fire that raced a change of schedule, until the job's next fire) has it
computed here from its schedule.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import orjson

from scheduler0.daemon.scheduling.cron import NEVER, Schedule, is_manual, resume_slot
from scheduler0.daemon.scheduling.policy import JobPolicy, job_schedule, policy_of
from scheduler0.daemon.state.queries import Page
from scheduler0.daemon.state.schema import encode_policy, execution_id, run_second
from scheduler0.daemon.timefmt import iso
from scheduler0.models import SCOPES, ExecutionTrigger

Row = sqlite3.Row | Mapping[str, Any]
"""A stored row, or a dict of the same columns (a row not read back)."""


def decode_data(raw: str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


def _data_fragment(raw: str | None) -> orjson.Fragment | None:
    return None if raw is None else orjson.Fragment(raw)


def job_wire(row: Row) -> dict[str, Any]:
    """``job_out`` for an answer that is only encoded (``raw_data``)."""
    return job_out(row, raw_data=True)


_JOB_COLUMNS = (
    "id", "project_id", "spec", "timezone", "data", "callback_url", "executor_id",
    "execution_type", "paused", "status_note", "last_fired_slot", "next_run", "last_state",
    "last_status_code", "fired_count", "success_count", "failed_count", "missed_count",
    "created_at", "updated_at", "name", "labels", "created_by", "modified_by", "policy",
)  # fmt: skip


def job_page(rows: list[sqlite3.Row]) -> orjson.Fragment:
    """``encoded_rows(rows, job_wire)``, by a shorter road for the common job
    (next run kept, not NEVER): columns by position, no dict per row, no call
    per field. The same JSON (``tests/unit/test_views.py`` compares them); a
    page of 10,000 jobs presented in about half the time."""
    if not rows:
        return orjson.Fragment(b"[]")
    keys = rows[0].keys()
    at = {name: n for n, name in enumerate(keys)}
    (i_id, i_pr, i_sp, i_tz, i_da, i_cu, i_ex, i_et, i_pa, i_sn, i_lf, i_nr, i_ls, i_lc, i_fc,
     i_sc, i_fa, i_mc, i_ca, i_ua, i_na, i_la, i_cb, i_mb, i_po) = (
        at[c] for c in _JOB_COLUMNS
    )  # fmt: skip
    fragment, fields = orjson.Fragment, _policy_fields
    parts: list[bytes] = []
    for start in range(0, len(rows), PAGE_SLICE):
        out: list[dict[str, Any]] = []
        for r in rows[start : start + PAGE_SLICE]:
            upcoming = r[i_nr]
            if upcoming is None or upcoming >= NEVER:
                out.append(job_wire(dict(zip(keys, r, strict=True))))
                continue
            paused, data, labels = r[i_pa], r[i_da], r[i_la]
            shown = {
                "id": r[i_id],
                "project_id": r[i_pr],
                "spec": r[i_sp],
                "timezone": r[i_tz],
                "data": None if data is None else fragment(data),
                "callback_url": r[i_cu],
                "executor_id": r[i_ex],
                "execution_type": r[i_et],
                "paused": bool(paused),
                "status": "paused" if paused else "active",
                "status_note": r[i_sn],
                "last_execution_date": iso(r[i_lf]),
                "next_run_at": None if paused else iso(upcoming),
                "last_state": r[i_ls],
                "last_status_code": r[i_lc],
                "fired_count": r[i_fc],
                "success_count": r[i_sc],
                "failed_count": r[i_fa],
                "missed_count": r[i_mc],
                "created_at": iso(r[i_ca]),
                "updated_at": iso(r[i_ua]),
                "name": r[i_na],
                "labels": {} if labels is None else _labels(labels),
                "created_by": r[i_cb],
                "modified_by": r[i_mb],
            }
            shown.update(fields(r[i_po]))
            out.append(shown)
        parts.append(orjson.dumps(out)[1:-1])
    return orjson.Fragment(b"[" + b",".join(parts) + b"]")


PAGE_SLICE = 500
"""Rows of a page presented and encoded per ``orjson.dumps`` call."""


def page_out(page: Page, name: str, present: Callable[[Row], dict[str, Any]]) -> dict[str, Any]:
    """``{"total", "offset", "limit", name: [...]}``, the rows already JSON
    (see :func:`encoded_rows`)."""
    return _page(page, name, encoded_rows(page.rows, present))


def jobs_page_out(page: Page) -> dict[str, Any]:
    """``page_out`` of jobs, presented by :func:`job_page`."""
    return _page(page, "jobs", job_page(page.rows))


def _page(page: Page, name: str, rows: orjson.Fragment) -> dict[str, Any]:
    return {"total": page.total, "offset": page.offset, "limit": page.limit, name: rows}


def encoded_rows(
    rows: list[sqlite3.Row], present: Callable[[Row], dict[str, Any]]
) -> orjson.Fragment:
    """The JSON array of ``present(row)`` for ``rows``, built ``PAGE_SLICE`` rows
    at a time (an ``orjson.Fragment``: the answer's encoding copies it as is).

    Why in slices: one ``orjson.dumps`` holds the GIL until it returns, and a
    page of 10,000 jobs (6.6 MB of JSON) held it ~50 ms on a loaded machine,
    during which the event loop (ticks, callbacks, health checks) could not
    run; between two slices it does. Only one slice of presented dicts is
    alive at a time, so a page leaves little for the garbage collector."""
    if not rows:
        return orjson.Fragment(b"[]")
    # A sqlite3.Row finds a column by name comparing it with every name before
    # it: each row becomes a dict of its values (one zip, in C) before it is
    # presented, which made presenting a page of jobs a third faster.
    keys = rows[0].keys()
    parts: list[bytes] = []
    for start in range(0, len(rows), PAGE_SLICE):
        chunk = rows[start : start + PAGE_SLICE]
        parts.append(
            orjson.dumps([present(dict(zip(keys, row, strict=True))) for row in chunk])[1:-1]
        )
    return orjson.Fragment(b"[" + b",".join(parts) + b"]")


def project_out(row: Row, with_secret: bool = True) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "created_by": row["created_by"],
        "modified_by": row["modified_by"],
    }
    if with_secret:
        out["signing_secret"] = row["signing_secret"]
    return out


def credential_out(row: Row) -> dict[str, Any]:
    """``scopes`` and ``projects`` NULL (a credential made before them) mean
    every scope and every project, shown as all four and ``[]``."""
    return {
        "id": row["id"],
        "api_key": row["api_key"],
        "description": row["description"],
        "archived": bool(row["archived"]),
        "scopes": list(SCOPES) if row["scopes"] is None else orjson.loads(row["scopes"]),
        "projects": [] if row["projects"] is None else orjson.loads(row["projects"]),
        "expires_at": iso(row["expires_at"]),
        "created_by": row["created_by"],
        "modified_by": row["modified_by"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def executor_out(row: Row) -> dict[str, Any]:
    """An executor without its secret (shown to nobody after it is given)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "webhook_url": row["webhook_url"],
        "webhook_method": row["webhook_method"],
        "has_webhook_secret": row["webhook_secret"] is not None,
        "jobs": row["jobs"],
        "created_by": row["created_by"],
        "modified_by": row["modified_by"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


_NO_RUNS_YET: Mapping[str, Any] = {
    "last_state": None,
    "last_status_code": None,
    "fired_count": 0,
    "success_count": 0,
    "failed_count": 0,
    "missed_count": 0,
}
"""The run fields of a job just created, alike in its row and as shown."""


def new_job_row(
    job_id: int, job: Mapping[str, Any], now: float, created_by: str | None = None
) -> dict[str, Any]:
    """The row ``JobsCreated`` writes for ``job`` (``created_by``: the batch's):
    lets the API answer without reading it back. Keep in step with the state
    machine's ``jobs_created``."""
    return {
        **job,
        "id": job_id,
        "paused": int(bool(job.get("paused"))),
        "not_before": job["anchor"],
        "next_run": job.get("next_run"),
        "name": job.get("name"),
        "labels": job.get("labels"),
        "executor_id": job.get("executor_id"),
        "revision": 0,
        "policy": encode_policy(job.get("policy")),
        "status_note": None,
        "last_fired_slot": None,
        **_NO_RUNS_YET,
        "created_at": now,
        "updated_at": now,
        "created_by": job.get("created_by", created_by),
        "modified_by": None,
    }


def created_jobs(
    first: int, jobs: Sequence[Mapping[str, Any]], now: float, created_by: str | None = None
) -> list[dict[str, Any]]:
    """``job_wire(new_job_row(...))`` of each job of a batch created from id
    ``first``, by a shorter road for the common job (a next run, not NEVER):
    what the batch shares (its times, each distinct policy's fields) is
    presented once, not once per job. The same JSON
    (``tests/unit/test_views.py`` compares them)."""
    created = iso(now)
    shapes: dict[str | None, dict[str, Any]] = {}  # per distinct policy: what jobs share
    out: list[dict[str, Any]] = []
    for job_id, job in enumerate(jobs, first):
        upcoming = job.get("next_run")
        if upcoming is None or upcoming >= NEVER:
            out.append(job_wire(new_job_row(job_id, job, now, created_by)))
            continue
        policy = job.get("policy")
        stored = encode_policy(policy) if policy else None
        shape = shapes.get(stored)
        if shape is None:
            shape = shapes[stored] = {
                "id": None,
                "project_id": None,
                "spec": None,
                "timezone": None,
                "data": None,
                "callback_url": None,
                "executor_id": None,
                "execution_type": None,
                "paused": False,
                "status": "active",
                "status_note": None,
                "last_execution_date": None,
                "next_run_at": None,
                **_NO_RUNS_YET,
                "created_at": created,
                "updated_at": created,
                "name": None,
                "labels": None,
                "created_by": None,
                "modified_by": None,
                **_policy_fields(stored),
            }
        shown = shape.copy()
        data = job["data"]
        shown["id"] = job_id
        shown["project_id"] = job["project_id"]
        shown["spec"] = job["spec"]
        shown["timezone"] = job["timezone"]
        shown["data"] = None if data is None else orjson.Fragment(data)
        shown["callback_url"] = job["callback_url"]
        shown["executor_id"] = job.get("executor_id")
        shown["execution_type"] = job["execution_type"]
        if job.get("paused"):
            shown["paused"], shown["status"] = True, "paused"
        else:
            shown["next_run_at"] = iso(upcoming)
        shown["name"] = job.get("name")
        shown["labels"] = job.get("labels") or {}
        shown["created_by"] = job.get("created_by", created_by)
        out.append(shown)
    return out


def job_out(row: Row, *, raw_data: bool = False) -> dict[str, Any]:
    """A job as the API shows it. ``raw_data``: its ``data`` as the stored JSON
    text, to be embedded as is by ``orjson`` (an ``orjson.Fragment``; for what
    is only encoded, a page or a create's answer: no decode and re-encode of
    each job's data, which for jobs of 20 KB of data was most of the work and
    of the memory)."""
    upcoming = next_run(row)
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "spec": row["spec"],
        "timezone": row["timezone"],
        "data": _data_fragment(row["data"]) if raw_data else decode_data(row["data"]),
        "callback_url": row["callback_url"],
        "executor_id": row["executor_id"],
        "execution_type": row["execution_type"],
        "paused": bool(row["paused"]),
        "status": job_status(row, upcoming),
        "status_note": row["status_note"],
        "last_execution_date": iso(row["last_fired_slot"]),
        "next_run_at": None if row["paused"] or upcoming is None else iso(upcoming),
        "last_state": row["last_state"],
        "last_status_code": row["last_status_code"],
        "fired_count": row["fired_count"],
        "success_count": row["success_count"],
        "failed_count": row["failed_count"],
        "missed_count": row["missed_count"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "name": row["name"],
        "labels": _labels(row["labels"]),
        "created_by": row["created_by"],
        "modified_by": row["modified_by"],
        **_policy_fields(row["policy"]),
    }


@lru_cache(maxsize=1024)
def _policy_fields(raw: str | None) -> dict[str, Any]:
    """``policy_out`` and ``client_names`` of a stored ``policy`` (most jobs
    share a few, or have none). Read-only: callers copy it into their dict."""
    policy = policy_of(raw)
    return {**policy_out(policy), **client_names(policy)}


def client_names(policy: JobPolicy) -> dict[str, Any]:
    """The official clients' names of a job's window and retries, shown beside
    ours (the same values): ``start_date``, ``end_date``, ``retry_max``."""
    return {
        "start_date": iso(_whole(policy.start_at)),
        "end_date": iso(_whole(policy.end_at)),
        "retry_max": None if policy.retry is None else policy.retry.get("attempts"),
    }


def _labels(stored: str | dict[str, str] | None) -> dict[str, str]:
    """``jobs.labels`` (JSON, NULL for none), or the map of a row not read back."""
    if stored is None:
        return {}
    if isinstance(stored, dict):
        return stored
    labels: dict[str, str] = orjson.loads(stored)
    return labels


RETRY_FIELDS = ("attempts", "initial_seconds", "multiplier", "cap_seconds", "jitter")
"""The fields of a job's ``retry`` as shown (``models.RetryOut``); None: the node's setting."""


def policy_out(policy: JobPolicy) -> dict[str, Any]:
    """A job's policies as shown: overlap and catchup with their defaults
    filled in, None for what follows the node's settings or is not set."""
    return {
        "overlap": policy.overlap,
        "retry": None if policy.retry is None else {k: policy.retry.get(k) for k in RETRY_FIELDS},
        "timeout_seconds": policy.timeout_seconds,
        "catchup": policy.catchup,
        "catchup_window_seconds": policy.catchup_window_seconds,
        "start_at": iso(_whole(policy.start_at)),
        "end_at": iso(_whole(policy.end_at)),
        "jitter_seconds": policy.jitter_seconds,
        "max_runs": policy.max_runs,
        "pause_after_failures": policy.pause_after_failures,
    }


def _whole(instant: float | None) -> float | int | None:
    """A whole second shown without a fraction (as it was most likely given)."""
    return int(instant) if instant is not None and instant.is_integer() else instant


def job_status(row: Row, upcoming: int | None) -> str:
    """``completed`` when the job has no run left (past its ``end_at`` or its
    ``max_runs``, an ``@at`` that fired): this follows from replicated state,
    so every node shows the same. Else ``paused`` or ``active``. A
    ``@manually`` job has no next run but is never completed."""
    if upcoming is None and not is_manual(row["spec"]) and _schedulable(row):
        return "completed"
    return "paused" if row["paused"] else "active"


def _schedulable(row: Row) -> bool:
    return _schedule(row["spec"], row["timezone"], row["anchor"], row["policy"]) is not None


def next_run(row: Row) -> int | None:
    """The job's next slot: kept in state, or (if unknown) the next slot on its
    grid after its last fired slot (or its start). None when it has none."""
    kept: int | None = row["next_run"]
    if kept is None:
        schedule = _schedule(row["spec"], row["timezone"], row["anchor"], row["policy"])
        if schedule is None:
            return None
        runs_left = policy_of(row["policy"]).runs_left(row["fired_count"])
        kept = resume_slot(schedule, row["not_before"], row["last_fired_slot"], runs_left)
    return None if kept >= NEVER else kept


def _schedule(spec: str, timezone: str, anchor: int, raw_policy: str | None) -> Schedule | None:
    try:
        return job_schedule(spec, timezone, anchor, raw_policy)
    except ValueError:
        return None


def execution_out(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "execution_id": execution_id(row["job_id"], row["slot"]),
        "job_id": row["job_id"],
        "project_id": row["project_id"],
        "scheduled_at": iso(run_second(row["slot"])),
        "slot": run_second(row["slot"]),
        "trigger": row["trigger"] or ExecutionTrigger.SCHEDULE.value,
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


def audit_record_out(row: Row) -> dict[str, Any]:
    """``audit_log.actor`` is shown as ``by``, ``at`` as RFC 3339."""
    return {
        "id": row["id"],
        "action": row["action"],
        "kind": row["kind"],
        "object_id": row["object_id"],
        "name": row["name"],
        "project_id": row["project_id"],
        "by": row["actor"],
        "principal": row["principal"],
        "at": iso(row["at"]),
        "detail": {} if row["detail"] is None else orjson.loads(row["detail"]),
    }
