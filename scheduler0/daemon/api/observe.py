"""Executions, health and status."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from scheduler0.daemon.api import views
from scheduler0.daemon.api.http import (
    id_param,
    off_loop,
    ok,
    paging,
    read_barrier,
    services,
    time_param,
)
from scheduler0.daemon.metrics import CONTENT_TYPE
from scheduler0.errors import FieldError, ValidationFailed
from scheduler0.models import EXECUTION_STATES


async def list_executions(request: Request) -> Response:
    queries = services(request).queries
    state = request.query_params.get("state") or None
    if state is not None and state not in EXECUTION_STATES:
        message = f"must be one of {', '.join(EXECUTION_STATES)}"
        raise ValidationFailed(f"state: {message}", [FieldError("state", message)])
    job_id = id_param(request, "job_id", "jobId")
    project_id = id_param(request, "project_id", "projectId")
    since, until = time_param(request, "since"), time_param(request, "until")
    limit, offset = paging(request)
    await read_barrier(request)

    def page() -> dict[str, Any]:
        rows = queries.executions(
            job_id=job_id,
            project_id=project_id,
            state=state,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return views.page_out(rows, "executions", views.execution_out)

    return ok(await off_loop(page))


async def healthcheck(request: Request) -> Response:
    return ok(services(request).status.health())


async def status(request: Request) -> Response:
    return ok(services(request).status.status())


async def metrics(request: Request) -> Response:
    """Prometheus exposition (operator auth: it shows the cluster's shape and load)."""
    exposition = await off_loop(services(request).metrics.exposition)
    return Response(exposition, media_type=CONTENT_TYPE)
