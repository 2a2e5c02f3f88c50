"""The node's HTTP application: the route table under /api/v1 (each route with
what it requires of its caller), authentication middleware, one error mapping.
Handlers find the node's services in ``app.state.services``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import NamedTuple

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler0.daemon.api import accounts, backup, cluster, jobs, observe
from scheduler0.daemon.api.auth import Access, AuthMiddleware, guard
from scheduler0.daemon.api.http import Handler, Services, failure
from scheduler0.daemon.node import Node
from scheduler0.errors import (
    BadRequest,
    NotFound,
    Scheduler0Error,
)

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


class RouteSpec(NamedTuple):
    path: str
    methods: tuple[str, ...]
    endpoint: Handler
    access: Access


CLIENT, OPERATOR, PUBLIC = Access.CLIENT, Access.OPERATOR, Access.PUBLIC

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("/projects", ("POST",), accounts.create_project, CLIENT),
    RouteSpec("/projects", ("GET",), accounts.list_projects, CLIENT),
    RouteSpec("/projects/{id}", ("GET",), accounts.get_project, CLIENT),
    RouteSpec("/projects/{id}", ("PUT", "PATCH"), accounts.update_project, CLIENT),
    RouteSpec("/projects/{id}", ("DELETE",), accounts.delete_project, CLIENT),
    RouteSpec("/credentials", ("POST",), accounts.create_credential, OPERATOR),
    RouteSpec("/credentials", ("GET",), accounts.list_credentials, OPERATOR),
    RouteSpec("/credentials/{id}", ("GET",), accounts.get_credential, OPERATOR),
    RouteSpec("/credentials/{id}", ("PUT", "PATCH"), accounts.update_credential, OPERATOR),
    RouteSpec("/credentials/{id}/archive", ("POST",), accounts.archive_credential, OPERATOR),
    RouteSpec("/credentials/{id}", ("DELETE",), accounts.delete_credential, OPERATOR),
    RouteSpec("/jobs", ("POST",), jobs.create_jobs, CLIENT),
    RouteSpec("/jobs", ("GET",), jobs.list_jobs, CLIENT),
    RouteSpec("/jobs/{id}", ("GET",), jobs.get_job, CLIENT),
    RouteSpec("/jobs/{id}", ("PUT", "PATCH"), jobs.update_job, CLIENT),
    RouteSpec("/jobs/{id}", ("DELETE",), jobs.delete_job, CLIENT),
    RouteSpec("/jobs/{id}/pause", ("POST",), jobs.pause_job, CLIENT),
    RouteSpec("/jobs/{id}/resume", ("POST",), jobs.resume_job, CLIENT),
    RouteSpec("/jobs/{id}/run", ("POST",), jobs.run_now, CLIENT),
    RouteSpec("/jobs/{id}/executions", ("GET",), jobs.job_executions, CLIENT),
    RouteSpec("/executions", ("GET",), observe.list_executions, CLIENT),
    RouteSpec("/healthcheck", ("GET",), observe.healthcheck, PUBLIC),
    RouteSpec("/status", ("GET",), observe.status, CLIENT),
    RouteSpec("/metrics", ("GET",), observe.metrics, OPERATOR),
    RouteSpec("/cluster", ("GET",), cluster.status, CLIENT),
    RouteSpec("/peer/status", ("GET",), cluster.peer_status, OPERATOR),
    RouteSpec("/cluster/members", ("POST",), cluster.add_member, OPERATOR),
    RouteSpec("/cluster/members/{id}", ("DELETE",), cluster.remove_member, OPERATOR),
    RouteSpec("/backup", ("GET",), backup.download, OPERATOR),
)
"""Every route of the API and what it requires of its caller, in one place."""


async def _on_error(request: Request, exc: Exception) -> Response:
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


def create_app(node: Node) -> Starlette:
    """The API of ``node``; its background work runs for the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start_background()
        try:
            yield
        finally:
            await node.stop_background()

    app = Starlette(
        routes=[
            Mount(
                "/api/v1",
                routes=[
                    Route(spec.path, guard(spec.endpoint, spec.access), methods=list(spec.methods))
                    for spec in ROUTES
                ],
            )
        ],
        exception_handlers={
            Scheduler0Error: _on_error,
            HTTPException: _on_error,
        },
        middleware=[Middleware(_CatchAll), Middleware(AuthMiddleware)],
        lifespan=lifespan,
    )
    app.state.services = Services(
        node.settings, node.queries, node.writes, node.status, node.metrics, node.backups
    )
    return app
