"""The node's HTTP application: routes under /api/v1, one error mapping."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class _CatchAll:
    """Answer an unexpected exception with the 500 envelope and keep the
    connection: Starlette's outermost error middleware re-raises after
    answering, which makes the server drop a kept-alive connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = failure(Scheduler0Error("internal error; see the node's log"))
            await response(scope, receive, send)


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
        raise exc  # not ours to map: _CatchAll answers it

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
        },
        middleware=[Middleware(_CatchAll)],
        lifespan=lifespan,
    )
