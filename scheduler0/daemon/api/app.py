"""The node's HTTP application: routes under /api/v1, one error mapping."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from scheduler0.daemon.api import accounts, cluster, jobs, observe
from scheduler0.daemon.api.http import failure
from scheduler0.errors import (
    BadRequest,
    NotFound,
    Scheduler0Error,
)

if TYPE_CHECKING:
    from scheduler0.daemon.node import Node

log = logging.getLogger(__name__)


class MethodNotAllowed(Scheduler0Error):
    status = 405
    code = "method_not_allowed"


def create_app(node: Node) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start_background()
        try:
            yield
        finally:
            await node.stop_background()

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, Scheduler0Error):
            return failure(exc)
        if isinstance(exc, HTTPException):
            if exc.status_code == 404:
                return failure(NotFound(f"no route {request.method} {request.url.path}"))
            if exc.status_code == 405:
                return failure(MethodNotAllowed(f"{request.method} is not allowed here"))
            error = BadRequest(str(exc.detail))
            error.status = exc.status_code
            return failure(error)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return failure(Scheduler0Error("internal error; see the node's log"))

    api = [
        *accounts.routes(node),
        *jobs.routes(node),
        *observe.routes(node),
        *cluster.routes(node),
    ]
    return Starlette(
        routes=[Mount("/api/v1", routes=api)],
        exception_handlers={
            Scheduler0Error: on_error,
            HTTPException: on_error,
            Exception: on_error,
        },
        lifespan=lifespan,
    )
