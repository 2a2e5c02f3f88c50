"""Executors: named callback destinations (URL, method, secret) that jobs
reference by ``executor_id`` instead of carrying their own ``callback_url``.

Executors belong to the cluster's one account, like credentials: every client
credential with ``read`` sees them all; creating, changing and deleting one
needs ``write`` on every project (a credential limited to some projects gets
403), since a change redirects the callbacks of every project's jobs that use
it. The secret is write-only: reads show ``has_webhook_secret``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from scheduler0.daemon.api import views
from scheduler0.daemon.api.audit import deleted_by
from scheduler0.daemon.api.auth import actor, visible
from scheduler0.daemon.api.http import (
    EXECUTORS_ORDER,
    ORDER_BY_DIRECTION,
    json_body,
    off_loop,
    ok,
    order_param,
    paging,
    path_id,
    read_barrier,
    services,
)
from scheduler0.daemon.executor.destinations import policy_for
from scheduler0.daemon.state import commands as c
from scheduler0.errors import FieldError
from scheduler0.models import ExecutorIn, ExecutorPatch, invalid, parse_one

_SMALL_BODY = 64 * 1024


def _check_destination(request: Request, url: str | None) -> None:
    """The callback destination policy, as for a job's ``callback_url``: 422
    naming ``webhook_url`` for a refused one (checked again at each delivery)."""
    if url is None:
        return
    svc = services(request)
    refusal = policy_for(svc.settings, svc.queries.members()).check_url(url)
    if refusal is not None:
        raise invalid([FieldError("webhook_url", f"destination refused: {refusal}")])


async def create_executor(request: Request) -> Response:
    svc = services(request)
    body = parse_one(ExecutorIn, await json_body(request, _SMALL_BODY))
    await off_loop(_check_destination, request, body.webhook_url)
    result = await svc.writes.propose(
        c.ExecutorCreated(
            now=time.time(),
            name=body.name,
            webhook_url=body.webhook_url,
            webhook_method=body.webhook_method,
            webhook_secret=body.webhook_secret,
            created_by=actor(request, body.created_by),
            type=body.type,
        )
    )
    return ok(views.executor_out(await off_loop(svc.queries.executor, result["id"])), 201)


async def list_executors(request: Request) -> Response:
    queries = services(request).queries
    limit, offset = paging(request)
    order = order_param(request, EXECUTORS_ORDER, ORDER_BY_DIRECTION)
    await read_barrier(request)
    page = await off_loop(queries.executors, limit, offset, order, visible(request))
    return ok(views.page_out(page, "executors", views.executor_out))


async def get_executor(request: Request) -> Response:
    executor_id = path_id(request)
    await read_barrier(request)
    queries = services(request).queries
    return ok(views.executor_out(await off_loop(queries.executor, executor_id, visible(request))))


async def update_executor(request: Request) -> Response:
    svc = services(request)
    executor_id = path_id(request)
    body = parse_one(ExecutorPatch, await json_body(request, _SMALL_BODY))
    await off_loop(_check_destination, request, body.webhook_url)
    changes: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("name", "webhook_url", "webhook_method")
        if getattr(body, name) is not None
    }
    changes["modified_by"] = actor(request, body.modified_by)
    if "webhook_secret" in body.model_fields_set:
        changes["webhook_secret"] = body.webhook_secret  # None: none of its own any more
    await svc.writes.propose(
        c.ExecutorUpdated(now=time.time(), executor_id=executor_id, changes=changes)
    )
    return ok(views.executor_out(await off_loop(svc.queries.executor, executor_id)))


async def delete_executor(request: Request) -> Response:
    """Refused (409, with the number of jobs) while jobs still use it; a
    deletion is recorded in the audit log (the body's ``deletedBy``, else the
    caller)."""
    executor_id = path_id(request)
    who = await deleted_by(request)
    await services(request).writes.propose(
        c.ExecutorDeleted(now=time.time(), executor_id=executor_id, **who)
    )
    return ok({"id": executor_id, "deleted": True})
