"""Executions, health and status."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler0.daemon.api.http import (
    authenticate,
    id_param,
    ok,
    paging,
    read_barrier,
    time_param,
)
from scheduler0.daemon.state.queries import EXECUTION_STATES
from scheduler0.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from scheduler0.daemon.node import Node


def routes(node: Node) -> list[Route]:
    async def list_executions(request: Request) -> Response:
        authenticate(request, node)
        state = request.query_params.get("state") or None
        if state is not None and state not in EXECUTION_STATES:
            message = f"must be one of {', '.join(EXECUTION_STATES)}"
            raise ValidationFailed(f"state: {message}", [FieldError("state", message)])
        job_id = id_param(request, "job_id", "jobId")
        project_id = id_param(request, "project_id", "projectId")
        since, until = time_param(request, "since"), time_param(request, "until")
        limit, offset = paging(request)
        await read_barrier(request, node)
        return ok(
            node.queries.executions(
                job_id=job_id,
                project_id=project_id,
                state=state,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
            )
        )

    async def healthcheck(request: Request) -> Response:
        return ok(node.health())

    async def status(request: Request) -> Response:
        authenticate(request, node)
        return ok(node.status())

    return [
        Route("/executions", list_executions, methods=["GET"]),
        Route("/healthcheck", healthcheck, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
    ]
