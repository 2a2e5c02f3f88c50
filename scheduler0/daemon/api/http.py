"""Shared HTTP plumbing: the services handlers use, the response envelope,
bodies, paging and query parameters.

Every answer is an envelope: ``{"success": true, "data": ...}`` or
``{"success": false, "data": null, "error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, ParamSpec, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from scheduler0.config import Settings
from scheduler0.daemon.api.turns import Turns, off_loop_share, off_loop_shares
from scheduler0.daemon.metrics import Metrics
from scheduler0.daemon.node import Backups, NodeStatus, Writes
from scheduler0.daemon.state.queries import ORDERS, Order, Queries
from scheduler0.errors import (
    BadRequest,
    FieldError,
    PayloadTooLarge,
    RequestTimeout,
    Scheduler0Error,
    UnsupportedMediaType,
    ValidationFailed,
)
from scheduler0.models import (
    EXECUTION_STATES,
    EXECUTION_TRIGGERS,
    MAX_JOB_NAME,
    MAX_LABELS,
    check_label,
)

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    """What handlers may use, kept in ``app.state.services``: the settings,
    the replica's reads, the one write path, the node's status, its metrics and
    backups."""

    settings: Settings
    queries: Queries
    writes: Writes
    status: NodeStatus
    metrics: Metrics
    backups: Backups
    turns: Turns = field(default_factory=Turns)
    """Large creates take turns by caller (``api/turns.py``)."""
    shares: Turns = field(default_factory=off_loop_shares)
    """Work off the event loop takes each caller's share (``api/turns.py``)."""
    holding: Callable[[], bool] = lambda: False
    """Whether the state machine holds fires not written yet; a request then
    writes them (``settle``) off the event loop before it reads."""
    settle: Callable[[], None] = lambda: None


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking read (SQLite, presenting many rows) in a worker thread, so
    that the event loop, which also runs the scheduler and the executor, is free.
    Within a request, the thread is one of its caller's share (a read gets
    429 if too many of them wait already; ``api/turns.py``)."""
    share = off_loop_share()
    if share is None:
        return await run_in_threadpool(fn, *args, **kwargs)
    async with share.shares.take(share.key, refuse=share.refuse):
        return await run_in_threadpool(fn, *args, **kwargs)


MAX_ID = 2**63 - 1
"""The largest row id SQLite stores; larger ids in paths or queries are invalid input."""


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"success": True, "data": data}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def ok_off_loop(
    build: Callable[[], Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``ok(build())``, with both the building and the JSON encoding off the
    loop: a maximal page (10,000 jobs) is megabytes of JSON."""
    body = await off_loop(lambda: orjson.dumps({"success": True, "data": build()}))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def failure(error: Scheduler0Error) -> Response:
    return Response(
        orjson.dumps({"success": False, "data": None, "error": error.to_dict()}),
        status_code=error.status,
        media_type="application/json",
        headers={"connection": "close"} if error.closes_connection else None,
    )


class ClientGone(Scheduler0Error):
    """The client disconnected before its body was read (or while its create
    waited for its turn): nobody is left to answer, and nothing was done. One
    INFO line, no traceback."""

    status = 400
    code = "client_disconnected"


def is_json(content_type: str | None) -> bool:
    """``application/json``, ``application/<anything>+json`` (any parameters),
    or no content-type at all (read as JSON, as every body of the API is)."""
    if content_type is None:
        return True
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def has_body(request: Request) -> bool:
    """Whether the request carries a body (an optional one may be left out)."""
    length = request.headers.get("content-length")
    if length is not None:
        return length != "0"
    return request.headers.get("transfer-encoding") is not None


BODY_IDLE_SECONDS = 10.0
"""How long a request's body may pause between two of its parts; past it,
408 (a body trickled in forever would hold its request, and its place in a
caller's waiting room, as long as its client likes)."""


async def json_body(request: Request, max_bytes: int) -> Any:
    """The request's body as JSON: 415 for another content-type (a form or a
    multipart upload is never read as JSON), 413 past ``max_bytes``, 408 if
    it pauses for ``BODY_IDLE_SECONDS``, 400 if malformed or empty."""
    _declared(request, None)
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        raise UnsupportedMediaType(
            f"content-type {content_type!r} is not JSON; send application/json"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is over the {max_bytes} byte limit")
    chunks = []
    size = 0
    parts = request.stream()
    try:
        while True:
            try:
                async with asyncio.timeout(BODY_IDLE_SECONDS):
                    chunk = await anext(parts)
            except StopAsyncIteration:
                break
            except TimeoutError:
                log.info(
                    "%s %s: no body bytes for %.0f s after %d of %s; refused",
                    request.method,
                    request.url.path,
                    BODY_IDLE_SECONDS,
                    size,
                    declared or "?",
                )
                raise RequestTimeout(
                    f"the request body paused for {BODY_IDLE_SECONDS:.0f} s after {size} bytes"
                ) from None
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"request body is over the {max_bytes} byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        log.info(
            "%s %s: the client disconnected after %d of %s body bytes; nothing done",
            request.method,
            request.url.path,
            size,
            declared or "?",
        )
        raise ClientGone("the client disconnected before its body was read") from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("request body is empty; expected JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


@dataclass(frozen=True)
class Param:
    """A query parameter, declared once: the route table lists the ones each
    route reads, the helpers below read it by this declaration (bounds, default,
    choices), and the OpenAPI document shows it from the same fields."""

    name: str
    description: str
    type: Literal["integer", "number|string", "string"] = "integer"
    default: int | str | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    alias: str | None = None
    """The camelCase spelling also accepted (``projectId``); both must agree."""
    repeated: bool = False
    """May be given more than once (``label=a=1&label=b=2``): read with ``label_params``."""
    max_length: int | None = None

    def names(self) -> tuple[str, ...]:
        return (self.name,) if self.alias is None else (self.alias, self.name)


@dataclass(frozen=True)
class Declared:
    """What a route declares it reads of a request, put in the request's scope
    by the route table: a handler that reads anything else is a bug (500)."""

    query: tuple[Param, ...]
    body: bool

    SCOPE_KEY: ClassVar[str] = "scheduler0.declared"


class Undeclared(RuntimeError):
    """A handler read a query parameter or a body its route does not declare:
    a bug, answered as an internal error (and logged)."""


def _declared(request: Request, param: Param | None) -> None:
    declared = request.scope.get(Declared.SCOPE_KEY)
    if not isinstance(declared, Declared):
        raise Undeclared(f"{request.url.path}: the route declares no inputs")
    if param is None and not declared.body:
        raise Undeclared(f"{request.url.path}: reads a body its route does not declare")
    if param is not None and param not in declared.query:
        raise Undeclared(
            f"{request.url.path}: reads ?{param.name}, which its route does not declare"
        )


MAX_OFFSET = 2**62

LIMIT = Param("limit", "Items per page.", default=100, minimum=1, maximum=1000)
JOBS_LIMIT = Param("limit", "Items per page.", default=100, minimum=1, maximum=10_000)
OFFSET = Param("offset", "Items to skip.", default=0, minimum=0, maximum=MAX_OFFSET)
PROJECT_ID = Param(
    "project_id",
    "Only this project's items (also accepted as projectId).",
    minimum=1,
    maximum=MAX_ID,
    alias="projectId",
)
JOB_ID = Param(
    "job_id",
    "Only this job's executions (also accepted as jobId).",
    minimum=1,
    maximum=MAX_ID,
    alias="jobId",
)
SINCE = Param(
    "since",
    "Slots at or after this time: unix seconds or ISO 8601 (UTC without an offset). Also"
    " accepted as startDate (the official clients' name).",
    type="number|string",
    alias="startDate",
)
UNTIL = Param(
    "until",
    "Slots before this time: unix seconds or ISO 8601 (UTC without an offset). Also accepted"
    " as endDate (the official clients' name).",
    type="number|string",
    alias="endDate",
)
CONSISTENCY = Param(
    "consistency",
    "local (default) reads this replica as it is; strong first waits for everything committed.",
    type="string",
    default="local",
    choices=("local", "strong"),
)
STATE = Param("state", "Only executions in this state.", type="string", choices=EXECUTION_STATES)
TRIGGER = Param(
    "trigger",
    "Only executions made this way: schedule, manual (run-now), backfill or catchup.",
    type="string",
    choices=EXECUTION_TRIGGERS,
)


ORDER_ALIASES: dict[str, str] = {
    "createdAt": "created_at",
    "dateCreated": "created_at",
    "date_created": "created_at",
    "updatedAt": "updated_at",
    "dateModified": "updated_at",
    "date_modified": "updated_at",
    "projectId": "project_id",
    "scheduledAt": "scheduled_at",
    "lastExecutionDateTime": "scheduled_at",
    "last_execution_datetime": "scheduled_at",
    "nextExecutionDateTime": "scheduled_at",
    "next_execution_datetime": "scheduled_at",
}
"""Other names of the ordering columns: camelCase, and the official clients'
(``dateCreated``; an execution's ``lastExecutionDateTime`` and
``nextExecutionDateTime`` are both its run's time here)."""


def _order_param(table: str) -> Param:
    """``order_by`` of ``table``'s list: one of its ``queries.ORDERS`` columns
    or an ``ORDER_ALIASES`` name of one."""
    columns = tuple(ORDERS[table])
    others = tuple(name for name, column in ORDER_ALIASES.items() if column in columns)
    return Param(
        "order_by",
        f"Order by {', '.join(columns)} (also accepted: {', '.join(others)}). Also accepted as"
        " orderBy.",
        type="string",
        choices=columns + others,
        alias="orderBy",
    )


PROJECTS_ORDER = _order_param("projects")
CREDENTIALS_ORDER = _order_param("credentials")
EXECUTORS_ORDER = _order_param("executors")
JOBS_ORDER = _order_param("jobs")
EXECUTIONS_ORDER = _order_param("executions")
AUDIT_ORDER = _order_param("audit")
DIRECTIONS = ("asc", "desc", "ASC", "DESC")
ORDER_BY_DIRECTION = Param(
    "order_by_direction",
    "asc or desc. Left out: ascending (executions: descending, newest first). Also accepted"
    " as orderByDirection.",
    type="string",
    choices=DIRECTIONS,
    alias="orderByDirection",
)
ORDER_DIRECTION = Param(
    "order_direction",
    "The same as order_by_direction (the official clients send orderDirection for"
    " executions); both given must agree. Also accepted as orderDirection.",
    type="string",
    choices=DIRECTIONS,
    alias="orderDirection",
)

JOB_NAME = Param(
    "name",
    "Only the job with this name (names are unique per project).",
    type="string",
    max_length=MAX_JOB_NAME,
)
LABEL = Param(
    "label",
    f"key=value: only jobs with this label; repeat it (at most {MAX_LABELS}) for jobs with"
    " every one of them.",
    type="string",
    repeated=True,
)
SEARCH = Param(
    "q",
    "Only jobs whose name, callback URL or spec contains this text (ignoring ASCII case).",
    type="string",
    max_length=MAX_JOB_NAME,
)


def int_param(request: Request, param: Param, name: str | None = None) -> int | None:
    """``param`` as an integer within its bounds (``name``: the spelling to read)."""
    _declared(request, param)
    name = name or param.name
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return param.default if isinstance(param.default, int) else None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(
            f"{name}: must be an integer", [FieldError(name, "must be an integer")]
        ) from None
    lo = -MAX_ID if param.minimum is None else param.minimum
    hi = MAX_ID if param.maximum is None else param.maximum
    if not lo <= value <= hi:
        message = f"must be between {lo} and {hi}"
        raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
    return value


def text_param(request: Request, param: Param) -> str | None:
    """``param`` as it was sent, or its default when absent or empty."""
    _declared(request, param)
    raw = request.query_params.get(param.name) or None
    if raw is None:
        return param.default if isinstance(param.default, str) else None
    if param.max_length is not None and len(raw) > param.max_length:
        message = f"must be at most {param.max_length} characters"
        raise ValidationFailed(f"{param.name}: {message}", [FieldError(param.name, message)])
    return raw


def label_params(request: Request, param: Param) -> tuple[tuple[str, str], ...]:
    """Every ``key=value`` given as ``param`` (empty ones ignored), each a
    valid label, at most ``MAX_LABELS``: the first bad one is a 422."""
    _declared(request, param)
    name = param.name
    given = [raw for raw in request.query_params.getlist(name) if raw]
    if len(given) > MAX_LABELS:
        message = f"at most {MAX_LABELS} labels"
        raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
    out = []
    for raw in given:
        key, sep, value = raw.partition("=")
        problem = "must be key=value" if not sep else check_label(key, value)
        if problem is not None:
            raise ValidationFailed(f"{name}: {problem}", [FieldError(name, problem)])
        out.append((key, value))
    return tuple(out)


def id_param(request: Request, param: Param) -> int | None:
    """An optional id filter accepted as ``project_id`` or ``projectId``; both must agree."""
    given = {int_param(request, param, name) for name in param.names()} - {None}
    if len(given) > 1:
        message = f"{param.alias} and {param.name} disagree; send one"
        raise ValidationFailed(f"{param.name}: {message}", [FieldError(param.name, message)])
    return given.pop() if given else None


def choice_param(request: Request, param: Param, message: str | None = None) -> str | None:
    """One of ``param.choices``, or its default when absent or empty."""
    _declared(request, param)
    raw = request.query_params.get(param.name) or None
    if raw is None:
        return param.default if isinstance(param.default, str) else None
    if raw not in param.choices:
        message = message or f"must be one of {', '.join(param.choices)}"
        raise ValidationFailed(f"{param.name}: {message}", [FieldError(param.name, message)])
    return raw


def either_param(request: Request, param: Param) -> tuple[str, str] | None:
    """``param`` as sent under either of its spellings, with the spelling
    (None: absent or empty); both given must be equal (422 otherwise)."""
    _declared(request, param)
    given = [
        (name, raw) for name in param.names() if (raw := request.query_params.get(name) or None)
    ]
    if len({raw for _, raw in given}) > 1:
        message = f"{param.alias} and {param.name} disagree; send one"
        raise ValidationFailed(f"{param.name}: {message}", [FieldError(param.name, message)])
    return given[0] if given else None


def order_param(request: Request, by: Param, *directions: Param) -> Order:
    """A list's order: ``by`` (one of its choices, an alias read as its
    column) and the first of ``directions`` given (all given must agree); 422
    naming the parameter as it was sent otherwise."""
    column = None
    found = either_param(request, by)
    if found is not None:
        name, raw = found
        if raw not in by.choices:
            columns = [choice for choice in by.choices if choice not in ORDER_ALIASES]
            message = f"must be one of {', '.join(columns)}"
            raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
        column = ORDER_ALIASES.get(raw, raw)
    chosen: list[tuple[str, str]] = []
    for param in directions:
        found = either_param(request, param)
        if found is None:
            continue
        name, raw = found
        if raw not in param.choices:
            message = "must be asc or desc"
            raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
        chosen.append((name, raw.lower()))
    if len({raw for _, raw in chosen}) > 1:
        name = chosen[-1][0]
        message = f"disagrees with {chosen[0][0]}; send one"
        raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
    return Order(column, chosen[0][1] == "desc" if chosen else None)


def paging(request: Request, limit: Param = LIMIT) -> tuple[int, int]:
    size = int_param(request, limit)
    offset = int_param(request, OFFSET)
    assert size is not None and offset is not None
    return size, offset


def time_param(request: Request, param: Param) -> float | None:
    """Unix seconds or ISO 8601; an ISO time without an offset is UTC. Read
    under either spelling of ``param`` (``since`` or ``startDate``)."""
    found = either_param(request, param)
    if found is None:
        return None
    name, raw = found
    try:
        value = float(raw)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            value = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError):
            value = math.nan
    if not math.isfinite(value):
        message = "must be unix seconds or an ISO 8601 time"
        raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
    return value


async def read_barrier(request: Request) -> None:
    """``?consistency=strong`` waits for everything committed so far; ``local`` (the
    default) reads this replica as it is."""
    consistency = choice_param(request, CONSISTENCY, "must be 'local' or 'strong'")
    if consistency == "strong":
        await services(request).writes.barrier()


def path_id(request: Request, name: str = "id") -> int:
    raw = request.path_params[name]
    value = int(raw) if raw.isascii() and raw.isdigit() else 0
    if not 1 <= value <= MAX_ID:
        message = f"must be an integer between 1 and {MAX_ID}"
        raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
    return value
