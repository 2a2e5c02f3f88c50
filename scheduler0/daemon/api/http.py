"""Shared HTTP plumbing: the services handlers use, the response envelope,
bodies, paging and query parameters.

Every answer is an envelope: ``{"success": true, "data": ...}`` or
``{"success": false, "data": null, "error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from scheduler0.config import Settings
from scheduler0.daemon.metrics import Metrics
from scheduler0.daemon.node import Backups, NodeStatus, Writes
from scheduler0.daemon.state.queries import Queries
from scheduler0.errors import (
    BadRequest,
    FieldError,
    PayloadTooLarge,
    Scheduler0Error,
    ValidationFailed,
)

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


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking read (SQLite, presenting many rows) in a worker thread, so
    that the event loop, which also runs the scheduler and the executor, is free."""
    return await run_in_threadpool(fn, *args, **kwargs)


MAX_ID = 2**63 - 1
"""The largest row id SQLite stores; larger ids in paths or queries are invalid input."""


def ok(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps({"success": True, "data": data}),
        status_code=status,
        media_type="application/json",
    )


def failure(error: Scheduler0Error) -> Response:
    return Response(
        orjson.dumps({"success": False, "data": None, "error": error.to_dict()}),
        status_code=error.status,
        media_type="application/json",
    )


async def json_body(request: Request, max_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is over the {max_bytes} byte limit")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body is over the {max_bytes} byte limit")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("request body is empty; expected JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(
            f"{name}: must be an integer", [FieldError(name, "must be an integer")]
        ) from None
    if not lo <= value <= hi:
        message = f"must be between {lo} and {hi}"
        raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
    return value


def id_param(request: Request, snake: str, camel: str) -> int | None:
    """An optional id filter accepted as ``project_id`` or ``projectId``; both must agree."""
    given = {int_param(request, name, None, 1, MAX_ID) for name in (camel, snake)} - {None}
    if len(given) > 1:
        message = f"{camel} and {snake} disagree; send one"
        raise ValidationFailed(f"{snake}: {message}", [FieldError(snake, message)])
    return given.pop() if given else None


def paging(request: Request, max_limit: int = 1000) -> tuple[int, int]:
    limit = int_param(request, "limit", 100, 1, max_limit)
    offset = int_param(request, "offset", 0, 0, 2**62)
    assert limit is not None and offset is not None
    return limit, offset


def time_param(request: Request, name: str) -> float | None:
    """Unix seconds or ISO 8601; an ISO time without an offset is UTC."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
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
    consistency = request.query_params.get("consistency") or "local"
    if consistency not in ("local", "strong"):
        message = "must be 'local' or 'strong'"
        raise ValidationFailed(f"consistency: {message}", [FieldError("consistency", message)])
    if consistency == "strong":
        await services(request).writes.barrier()


def path_id(request: Request, name: str = "id") -> int:
    raw = request.path_params[name]
    value = int(raw) if raw.isascii() and raw.isdigit() else 0
    if not 1 <= value <= MAX_ID:
        message = f"must be an integer between 1 and {MAX_ID}"
        raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)])
    return value
