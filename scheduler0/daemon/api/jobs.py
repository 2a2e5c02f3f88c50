"""Jobs: batch creation, reads, updates, pause/resume, per-job history.

``POST /jobs`` takes a JSON array of jobs (or one object). Every item is
validated before anything is applied; the whole batch is then ONE command,
applied atomically: all jobs are created or none.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from scheduler0.daemon.api import views
from scheduler0.daemon.api.audit import deleted_by
from scheduler0.daemon.api.auth import actor, caller, principal, visible
from scheduler0.daemon.api.http import (
    EXECUTIONS_ORDER,
    JOB_NAME,
    JOBS_LIMIT,
    JOBS_ORDER,
    LABEL,
    ORDER_BY_DIRECTION,
    ORDER_DIRECTION,
    PROJECT_ID,
    SEARCH,
    SINCE,
    TRIGGER,
    UNTIL,
    ClientGone,
    Services,
    choice_param,
    has_body,
    id_param,
    json_body,
    label_params,
    off_loop,
    ok,
    ok_off_loop,
    order_param,
    paging,
    path_id,
    read_barrier,
    services,
    text_param,
    time_param,
)
from scheduler0.daemon.api.idempotent import idempotency_key, replay_headers
from scheduler0.daemon.api.turns import LARGE_CREATE_BYTES, LARGE_CREATE_JOBS
from scheduler0.daemon.executor.destinations import DestinationPolicy, policy_for
from scheduler0.daemon.scheduling.cron import (
    EverySchedule,
    OneShotSchedule,
    ScheduleError,
    is_manual,
    parse_schedule,
    validate_schedule,
)
from scheduler0.daemon.scheduling.policy import (
    TooManySlots,
    job_next_run,
    job_schedule,
    slots_between,
)
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.queries import JobSearch, Queries, Visible
from scheduler0.daemon.state.schema import encode_policy
from scheduler0.daemon.timefmt import iso
from scheduler0.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from scheduler0.models import (
    ALIAS_PAIRS,
    MAX_BACKFILL_SLOTS,
    MAX_UNSENT_BACKFILL,
    BackfillIn,
    CredentialScope,
    JobIn,
    JobPatch,
    PauseIn,
    invalid,
    known_keys,
    parse_one,
)


@lru_cache(maxsize=4096)
def _schedule_error(spec: str, timezone: str) -> FieldError | None:
    try:
        validate_schedule(spec, timezone)
    except ScheduleError as exc:
        return FieldError(exc.field, exc.message)
    return None


def check_schedule(spec: str, timezone: str, index: int | None = None) -> FieldError | None:
    error = _schedule_error(spec, timezone)
    if error is None:
        return None
    return FieldError(error.field, error.message, index)


def first_run(
    spec: str,
    timezone: str,
    anchor: int,
    not_before: int,
    last_fired: int | None = None,
    policy: str | None = None,
    fired_count: int = 0,
) -> int | None:
    """The next run a command keeps in state for a job of ``spec`` (its grid
    anchored at ``anchor``, bounded by its ``policy``) that starts at
    ``not_before``, last fired at ``last_fired`` and has fired
    ``fired_count`` scheduled runs (``cron.NEVER`` when it has none left).
    None for a spec that no longer parses (it was checked when the job was made)."""
    try:
        return job_next_run(spec, timezone, anchor, policy, not_before, last_fired, fired_count)
    except ScheduleError:
        return None


def policy_problems(
    spec: str,
    timezone: str,
    policy: dict[str, Any],
    now: float,
    index: int | None = None,
    *,
    new_spec: bool = True,
) -> list[FieldError]:
    """What a job's policies (and an ``@at`` spec) are checked against beyond
    their models: a new one-shot time still ahead, ``end_at`` after ``start_at``
    (also when a patch gives only one), a jitter shorter than an ``@every``
    period. The schedule itself was checked first."""
    found = []
    try:
        schedule = parse_schedule(spec, timezone, 0)
    except ScheduleError:
        return []
    if new_spec and isinstance(schedule, OneShotSchedule) and schedule.at <= now:
        found.append(FieldError("spec", "the @at time is not in the future", index))
    start, end = policy.get("start_at"), policy.get("end_at")
    if start is not None and end is not None and end <= start:
        found.append(FieldError("end_at", "must be later than start_at", index))
    jitter = policy.get("jitter_seconds") or 0
    if isinstance(schedule, EverySchedule) and jitter >= schedule.period:
        found.append(
            FieldError(
                "jitter_seconds", f"must be less than the @every period ({schedule.period}s)", index
            )
        )
    return found


def encode_data(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


@dataclass(frozen=True)
class JobChecks:
    """What a job is checked against beyond its model: where its callback may
    go (the destination policy, for the current membership) and the size of
    its data (MaxJobDataKb)."""

    policy: DestinationPolicy
    max_data_bytes: int

    def problems(
        self, url: str | None, data: str | None, index: int | None = None
    ) -> list[FieldError]:
        """The callback URL's and the encoded data's problems."""
        found = []
        refusal = None if url is None else self.policy.check_url(url)
        if refusal is not None:
            found.append(FieldError("callback_url", f"destination refused: {refusal}", index))
        if data is not None and len(data) > self.max_data_bytes:
            found.append(
                FieldError(
                    "data",
                    f"is {len(data)} bytes as JSON; at most {self.max_data_bytes} (MaxJobDataKb)",
                    index,
                )
            )
        return found


def job_checks(svc: Services) -> JobChecks:
    return JobChecks(
        policy_for(svc.settings, svc.queries.members()), svc.settings.max_job_data_kb * 1024
    )


_JOB_LIST = TypeAdapter(list[JobIn])
_JOB_KEYS = known_keys(JobIn)
_DOUBLE_KEYS = ALIAS_PAIRS


def _batch_problems(jobs: list[JobIn], checks: JobChecks) -> list[FieldError]:
    """Each job's URL (once per distinct URL) and data problems, with its index."""
    refused: dict[str, str | None] = {}
    found = []
    for index, job in enumerate(jobs):
        url = job.callback_url
        if url is not None:
            if url not in refused:
                refused[url] = checks.policy.check_url(url)
            url = url if refused[url] is not None else None
        found += checks.problems(url, encode_data(job.data), index)
    return found


def _validate_fast(items: list[Any]) -> list[JobIn] | None:
    """The whole batch in one pydantic call; None if anything needs the
    item-by-item path (which names each problem)."""
    plain: set[frozenset[str]] = set()  # the key sets checked: a batch has few
    for item in items:
        if not isinstance(item, dict):
            return None
        keys = frozenset(item)
        if keys in plain:
            continue
        if not keys <= _JOB_KEYS or any(a in keys and b in keys for a, b in _DOUBLE_KEYS):
            return None  # unknown keys: one error per item on the slow path, not one per key
        plain.add(keys)
    try:
        jobs = _JOB_LIST.validate_python(items)
    except ValidationError:
        return None
    if any(job.destination_problems() for job in jobs):
        return None
    if any(check_schedule(job.spec, job.timezone) is not None for job in jobs):
        return None
    now = time.time()
    if any(_policy_problems(job, now) for job in jobs):
        return None
    return jobs


def _policy_problems(job: JobIn, now: float, index: int | None = None) -> list[FieldError]:
    """``policy_problems`` of a new job; nothing to check for a plain
    ``* * * * *`` job without policies (the common case: no parse)."""
    policy = job.policy()
    if policy is None and not job.spec.lstrip().lower().startswith("@at"):
        return []
    return policy_problems(job.spec, job.timezone, policy or {}, now, index)


def _usable_projects(queries: Queries, jobs: list[JobIn], shown: Visible) -> set[int]:
    """The projects of ``jobs`` that exist and the caller may see: a project
    outside its credential's is refused as if it did not exist."""
    known = queries.existing_project_ids([job.project_id for job in jobs])
    return known if shown is None else known & shown


def _unknown_executors(queries: Queries, jobs: list[JobIn]) -> list[FieldError]:
    """A 422 detail for each job naming an executor that does not exist.
    Executors serve the whole account: any credential's job may name any."""
    wanted = [job.executor_id for job in jobs if job.executor_id is not None]
    if not wanted:
        return []
    known = queries.existing_executor_ids(wanted)
    return [
        FieldError("executor_id", f"no executor with id {job.executor_id}", index)
        for index, job in enumerate(jobs)
        if job.executor_id is not None and job.executor_id not in known
    ]


def validate_jobs(
    items: list[Any], queries: Queries, checks: JobChecks, shown: Visible = None
) -> list[JobIn]:
    """All items valid, or one ValidationFailed naming every bad field and index."""
    fast = _validate_fast(items)
    if fast is not None:
        known = _usable_projects(queries, fast, shown)
        if (
            all(job.project_id in known for job in fast)
            and not _batch_problems(fast, checks)
            and not _unknown_executors(queries, fast)
        ):
            return fast
    jobs: list[JobIn] = []
    details: list[FieldError] = []
    for index, item in enumerate(items):
        try:
            job = parse_one(JobIn, item, index)
        except ValidationFailed as exc:
            details.extend(exc.details)
            continue
        details += job.destination_problems(index)
        problem = check_schedule(job.spec, job.timezone, index)
        if problem is not None:
            details.append(problem)
        else:
            details += _policy_problems(job, time.time(), index)
        details += checks.problems(job.callback_url, encode_data(job.data), index)
        jobs.append(job)
    if not details:
        known = _usable_projects(queries, jobs, shown)
        details = [
            FieldError("project_id", f"no project with id {job.project_id}", index)
            for index, job in enumerate(jobs)
            if job.project_id not in known
        ]
        details += _unknown_executors(queries, jobs)
    if details:
        raise invalid(details)
    return jobs


def _max_body(request: Request) -> int:
    return int(services(request).settings.max_request_body_mb * 2**20)


async def create_jobs(request: Request) -> Response:
    svc = services(request)
    who = principal(request)  # each job's created_by unless the job names its own
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > LARGE_CREATE_BYTES:
        # A caller whose waiting room is full is over its share: 429 before
        # its body is read (a large create's, or one job's with a large data).
        svc.turns.check(who)
    body = await json_body(request, _max_body(request))
    single = isinstance(body, dict)
    items = [body] if single else body
    if not isinstance(items, list):
        raise ValidationFailed(
            "body: expected a JSON array of jobs or one job object",
            [FieldError("body", "must be an array of job objects or one job object")],
        )
    if not items:
        raise ValidationFailed(
            "body: the array holds no jobs", [FieldError("body", "must hold at least one job")]
        )
    if len(items) > svc.settings.max_jobs_per_request:
        raise PayloadTooLarge(
            f"{len(items)} jobs in one request; the limit is {svc.settings.max_jobs_per_request}"
        )

    # Validation and the answer's rows (each with its next run) are CPU work in
    # proportion to the batch: off the loop that runs the scheduler's ticks.
    def prepare() -> tuple[c.JobsCreated, list[dict[str, Any]]]:
        jobs = validate_jobs(items, svc.queries, job_checks(svc), visible(request))
        keyed = idempotency_key(request, "POST /jobs", body)
        now = time.time()
        rows = _job_rows(jobs, int(now))
        command = c.JobsCreated(now=now, jobs=rows, idempotency=keyed, created_by=who)
        return command, rows

    # A large batch holds every node's apply for a while: one caller's take
    # turns with everyone else's (``api/turns.py``).
    large = len(items) > LARGE_CREATE_JOBS
    async with svc.turns.take(who) if large else contextlib.nullcontext():
        if large and await request.is_disconnected():
            # it waited for its turn and its client gave up meanwhile: not created
            raise ClientGone("the client disconnected while its create waited for its turn")
        command, rows = await off_loop(prepare)
        now = command.now
        result = await svc.writes.propose(command)
    if result.get("replayed"):  # the first answer, as the jobs stand now

        def first_answer() -> Any:
            out = [views.job_out(row) for row in svc.queries.jobs_between(*result["ids"])]
            return out[0] if single and out else out

        return await ok_off_loop(first_answer, 201, replay_headers(result))
    # Answer from what was committed, without reading 1,000 rows back.
    first = result["ids"][0]

    def created() -> Any:
        out = views.created_jobs(first, rows, now, who)
        return out[0] if single else out

    return await ok_off_loop(created, 201)


@lru_cache(maxsize=4096)
def _first_of_new(spec: str, timezone: str, stored: str | None, anchor: int) -> int | None:
    """``first_run`` of a job created at ``anchor`` (nothing fired yet): the
    batches of one second share their schedules' first runs (a million jobs
    of a varied mix held 1,304 distinct schedules, about 500 in each batch of
    1,000, each costing a ``next_after`` in its zone)."""
    return first_run(spec, timezone, anchor, anchor, None, stored)


def _job_rows(jobs: list[JobIn], anchor: int) -> list[dict[str, Any]]:
    """The ``JobsCreated`` items: each with its first run (once per distinct
    schedule and second: ``_first_of_new``)."""
    rows = []
    for job in jobs:
        policy = job.policy()
        stored = encode_policy(policy)
        row = {
            "project_id": job.project_id,
            "spec": job.spec,
            "timezone": job.timezone,
            "data": encode_data(job.data),
            "callback_url": job.callback_url or "",  # "" for a job of an executor
            "execution_type": job.execution_type,
            "anchor": anchor,
            "next_run": _first_of_new(job.spec, job.timezone, stored, anchor),
        }
        if job.executor_id is not None:  # absent: its own callback_url (version 5)
            row["executor_id"] = job.executor_id
        if job.name is not None:  # absent: no name (as in every older command)
            row["name"] = job.name
        if job.labels:
            row["labels"] = job.labels
        if policy is not None:
            row["policy"] = policy
        if job.created_by:  # absent: the batch's created_by (the caller)
            row["created_by"] = job.created_by
        if job.paused:  # absent: active, as in every older command
            row["paused"] = True
        rows.append(row)
    return rows


async def list_jobs(request: Request) -> Response:
    queries = services(request).queries
    project_id = id_param(request, PROJECT_ID)
    limit, offset = paging(request, JOBS_LIMIT)
    search = JobSearch(
        name=text_param(request, JOB_NAME),
        labels=label_params(request, LABEL),
        q=text_param(request, SEARCH),
    )
    order = order_param(request, JOBS_ORDER, ORDER_BY_DIRECTION)
    shown = visible(request)
    await read_barrier(request)

    def page() -> dict[str, Any]:
        if project_id is not None:
            if shown is not None and project_id not in shown:
                raise NotFound(f"no project with id {project_id}")  # as if it did not exist
            queries.project(project_id)  # 404 for an unknown project
        rows = queries.jobs(project_id, limit, offset, shown, search, order)
        return views.jobs_page_out(rows)

    return await ok_off_loop(page)


async def get_job(request: Request) -> Response:
    job_id = path_id(request)
    await read_barrier(request)
    return ok(await off_loop(_job_out, services(request).queries, job_id))


def _job_out(queries: Queries, job_id: int) -> dict[str, Any]:
    return views.job_out(queries.job(job_id))


async def update_job(request: Request) -> Response:
    svc = services(request)
    job_id = path_id(request)
    body = await json_body(request, _max_body(request))
    current = await off_loop(svc.queries.job_row, job_id)
    if current is None:
        raise NotFound(f"no job with id {job_id}")
    # A client's date without offset is read in the job's timezone (the new one, if given).
    patch = parse_one(JobPatch, body, context={"timezone": current["timezone"]})
    pausing = patch.status is not None and (patch.status == "inactive") != bool(current["paused"])
    if pausing and not caller(request).may(CredentialScope.EXECUTE):
        # What /pause and /resume need; a status the job already has changes nothing.
        raise Forbidden("pausing or resuming a job needs a credential with the execute scope")
    changes: dict[str, Any] = {}
    for name in ("spec", "timezone", "callback_url", "execution_type"):
        value = getattr(patch, name)
        if value is not None:
            changes[name] = value
    if "data" in patch.model_fields_set:
        changes["data"] = encode_data(patch.data)
    if "name" in patch.model_fields_set:
        changes["name"] = patch.name  # None removes it
    if patch.labels is not None:
        changes["labels"] = patch.labels
    changes.update(await off_loop(_destination_changes, svc.queries, current, patch))
    changes["modified_by"] = actor(request, patch.modified_by)
    if "callback_url" in changes or changes.get("data") is not None:
        checks = await off_loop(job_checks, svc)
        # "" (the job moves onto an executor) is not a URL to check.
        problems = checks.problems(changes.get("callback_url") or None, changes.get("data"))
        if problems:
            raise invalid(problems)
    policy_given = patch.policy_changes(_stored_retry(current["policy"]))
    new_schedule = "spec" in changes or "timezone" in changes
    if new_schedule or policy_given:
        changes.update(await off_loop(_schedule_changes, current, changes, policy_given))
    if changes or patch.status is None:
        await svc.writes.propose(c.JobUpdated(now=time.time(), job_id=job_id, changes=changes))
    if patch.status is not None:
        await _apply_status(svc, job_id, paused=patch.status == "inactive")
    return ok(await off_loop(_job_out, svc.queries, job_id))


def _stored_retry(policy: str | None) -> dict[str, Any] | None:
    """The job's stored retry policy: a ``retry_max`` patch keeps its other fields."""
    retry = None if policy is None else orjson.loads(policy).get("retry")
    return retry if isinstance(retry, dict) else None


async def _apply_status(svc: Services, job_id: int, *, paused: bool) -> None:
    """An official client's ``status`` in a patch: ``inactive`` pauses the job
    and ``active`` resumes it, exactly as ``/pause`` and ``/resume`` do (one
    ``JobPaused``), unless it already is so (its status note is kept)."""
    job = await off_loop(svc.queries.job, job_id)
    if bool(job["paused"]) == paused:
        return
    now = time.time()
    next_run = None if paused else await off_loop(_resumed_run, svc.queries, job_id, int(now))
    await svc.writes.propose(c.JobPaused(now=now, job_id=job_id, paused=paused, next_run=next_run))


def _destination_changes(queries: Queries, current: views.Row, patch: JobPatch) -> dict[str, Any]:
    """The ``JobUpdated.changes`` of a new destination: an executor (the job's
    own URL then ``""``), or its own ``callback_url`` (no executor any more)."""
    if patch.executor_id is not None and patch.callback_url is not None:
        raise invalid([FieldError("executor_id", "give callback_url or executor_id, not both")])
    if patch.executor_id is not None:
        if not queries.existing_executor_ids([patch.executor_id]):
            raise invalid([FieldError("executor_id", f"no executor with id {patch.executor_id}")])
        return {"executor_id": patch.executor_id, "callback_url": ""}
    if patch.callback_url is not None and current["executor_id"] is not None:
        return {"executor_id": None}
    return {}


GRID_POLICIES = frozenset({"start_at", "end_at", "max_runs"})
"""Policies that decide which slots a job has: a change moves its next run."""


def _schedule_changes(
    current: views.Row, changes: dict[str, Any], policy_given: dict[str, Any]
) -> dict[str, Any]:
    """The further ``JobUpdated.changes`` of a new schedule or new policies,
    checked (422 naming the field) against the job's stored spec and policies:
    the policies given, and for a new schedule or new bounds, where the job
    now starts and its next run."""
    now = time.time()
    new_schedule = "spec" in changes or "timezone" in changes
    spec = changes.get("spec", current["spec"])
    timezone = changes.get("timezone", current["timezone"])
    problem = check_schedule(spec, timezone)
    if problem is not None:
        raise invalid([problem])
    merged = _merged_policy(current["policy"], policy_given)
    # An unchanged one-shot spec is not checked again (it may have run).
    problems = policy_problems(spec, timezone, merged, now, new_spec="spec" in changes)
    if problems:
        raise invalid(problems)
    out: dict[str, Any] = {"policy": policy_given} if policy_given else {}
    if not new_schedule and GRID_POLICIES.isdisjoint(policy_given):
        return out
    # The new schedule (or bounds) applies from the next slot after now; a new
    # schedule's grid is anchored now (for @every).
    start = int(now)
    anchor = current["anchor"]
    if new_schedule:
        out["anchor"] = anchor = start
    out["not_before"] = start
    out["next_run"] = first_run(
        spec,
        timezone,
        anchor,
        start,
        current["last_fired_slot"],
        encode_policy(merged),
        current["fired_count"],
    )
    return out


def _merged_policy(stored: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """A job's policies after a patch (as ``JobUpdated`` applies it)."""
    current: dict[str, Any] = {} if stored is None else orjson.loads(stored)
    return {k: v for k, v in {**current, **given}.items() if v is not None}


async def delete_job(request: Request) -> Response:
    job_id = path_id(request)
    who = await deleted_by(request)
    await services(request).writes.propose(c.JobDeleted(now=time.time(), job_id=job_id, **who))
    return ok({"id": job_id, "deleted": True})


async def _set_paused(request: Request, paused: bool) -> Response:
    svc = services(request)
    job_id = path_id(request)
    raw = await json_body(request, _NOTE_BODY) if has_body(request) else {}
    body = parse_one(PauseIn, raw)
    now = time.time()
    next_run = None
    if not paused:  # the slots due while paused are skipped: the next is after now
        next_run = await off_loop(_resumed_run, svc.queries, job_id, int(now))
    command = c.JobPaused(
        now=now,
        job_id=job_id,
        paused=paused,
        next_run=next_run,
        note=body.note,
        modified_by=actor(request, body.modified_by),
    )
    await svc.writes.propose(command)
    return ok(await off_loop(_job_out, svc.queries, job_id))


def _resumed_run(queries: Queries, job_id: int, now: int) -> int | None:
    job = queries.job(job_id)
    return first_run(
        job["spec"],
        job["timezone"],
        job["anchor"],
        now,
        job["last_fired_slot"],
        job["policy"],
        job["fired_count"],
    )


_NOTE_BODY = 16 * 1024
"""The largest body pause and resume read (a note)."""


async def pause_job(request: Request) -> Response:
    return await _set_paused(request, True)


async def resume_job(request: Request) -> Response:
    return await _set_paused(request, False)


async def run_now(request: Request) -> Response:
    """A manual run: keyed apart from the schedule's runs (``JobTriggered.manual``),
    so a slot of the schedule in the same second never refuses it."""
    job_id = path_id(request)
    now = time.time()
    result = await services(request).writes.propose(
        c.JobTriggered(now=now, job_id=job_id, slot=int(now), manual=True)
    )
    return ok(result, 202)


_BACKFILL_BODY = 4 * 1024
"""The largest body a backfill reads (two times)."""


async def backfill(request: Request) -> Response:
    """Fire every slot of the job's grid in ``[from, to]`` once, with the
    execution id its scheduled run would have had: the state machine queues
    the slots not run yet (``JobBackfilled``), and the bucket's owner sends
    them at a bounded pace (``scheduling/adoption.py``)."""
    svc = services(request)
    job_id = path_id(request)
    body = parse_one(BackfillIn, await json_body(request, _BACKFILL_BODY))
    now = time.time()
    slots = await off_loop(_backfill_slots, svc.queries, job_id, body, now)
    result = await svc.writes.propose(c.JobBackfilled(now=now, job_id=job_id, slots=slots))
    return ok({**result, "first": iso(result["first"]), "last": iso(result["last"])}, 202)


def _backfill_slots(queries: Queries, job_id: int, body: BackfillIn, now: float) -> list[int]:
    """The slots of the job's grid (bounded by its ``start_at``/``end_at``)
    from ``from`` to ``to`` (now, if later), both included; 422 naming the
    field for an empty or reversed range, a range of more than
    ``MAX_BACKFILL_SLOTS``, or a job without a grid (``@manually``)."""
    job = queries.job(job_id)
    start, end = body.from_, min(body.to, now)
    if start >= now:
        raise invalid([FieldError("from", "must be in the past")])
    if end <= start:
        raise invalid([FieldError("to", "must be later than from")])
    if is_manual(job["spec"]):
        raise invalid([FieldError("spec", "an @manually job has no schedule to backfill")])
    schedule = job_schedule(job["spec"], job["timezone"], job["anchor"], job["policy"])
    try:
        slots = slots_between(schedule, start, end, MAX_BACKFILL_SLOTS)
    except TooManySlots as exc:
        message = (
            f"the range holds more than {exc.limit} slots (the first {exc.limit} end at"
            f" {iso(exc.last)}); backfill it in parts"
        )
        raise invalid([FieldError("to", message)]) from None
    waiting = queries.unsent_backfill(job["project_id"])
    if waiting + len(slots) > MAX_UNSENT_BACKFILL:
        # Checked here, not in apply: two requests at once may pass together.
        raise Conflict(
            f"project {job['project_id']} has {waiting:,} backfilled runs waiting to be sent"
            f" and this range adds up to {len(slots):,}; at most {MAX_UNSENT_BACKFILL:,} may"
            " wait: backfill it once more of them have gone out"
        )
    return slots


async def job_executions(request: Request) -> Response:
    queries = services(request).queries
    job_id = path_id(request)
    limit, offset = paging(request)
    since, until = time_param(request, SINCE), time_param(request, UNTIL)
    trigger = choice_param(request, TRIGGER)
    order = order_param(request, EXECUTIONS_ORDER, ORDER_BY_DIRECTION, ORDER_DIRECTION)
    await read_barrier(request)

    def page() -> dict[str, Any]:
        queries.job(job_id)  # 404 for an unknown job
        rows = queries.executions(
            job_id=job_id,
            trigger=trigger,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            order=order,
        )
        return views.page_out(rows, "executions", views.execution_out)

    return await ok_off_loop(page)
