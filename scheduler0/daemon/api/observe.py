"""Executions, health and status."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from scheduler0.daemon.api import views
from scheduler0.daemon.api.auth import node_status_for, visible
from scheduler0.daemon.api.http import (
    EXECUTIONS_ORDER,
    JOB_ID,
    ORDER_BY_DIRECTION,
    ORDER_DIRECTION,
    PROJECT_ID,
    SINCE,
    STATE,
    TRIGGER,
    UNTIL,
    choice_param,
    id_param,
    ok,
    ok_off_loop,
    order_param,
    paging,
    read_barrier,
    services,
    time_param,
)
from scheduler0.daemon.metrics import CONTENT_TYPE


async def list_executions(request: Request) -> Response:
    queries = services(request).queries
    state = choice_param(request, STATE)
    trigger = choice_param(request, TRIGGER)
    job_id = id_param(request, JOB_ID)
    project_id = id_param(request, PROJECT_ID)
    since, until = time_param(request, SINCE), time_param(request, UNTIL)
    limit, offset = paging(request)
    order = order_param(request, EXECUTIONS_ORDER, ORDER_BY_DIRECTION, ORDER_DIRECTION)
    shown = visible(request)
    await read_barrier(request)

    def page() -> dict[str, Any]:
        rows = queries.executions(
            visible=shown,
            job_id=job_id,
            project_id=project_id,
            state=state,
            trigger=trigger,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            order=order,
        )
        return views.page_out(rows, "executions", views.execution_out)

    return await ok_off_loop(page)


async def healthcheck(request: Request) -> Response:
    return ok(services(request).status.health())


async def status(request: Request) -> Response:
    answer = services(request).status.status()
    answer["node"] = node_status_for(request, answer["node"])
    return ok(answer)


async def metrics(request: Request) -> Response:
    """Prometheus exposition (operator auth: it shows the cluster's shape and load).
    Built in a thread outside the operator's share of work off the loop
    (``api/turns.py``): monitoring answers while the operator's tools are busy."""
    exposition = await run_in_threadpool(services(request).metrics.exposition)
    return Response(exposition, media_type=CONTENT_TYPE)
