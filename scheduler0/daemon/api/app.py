"""The node's HTTP application: the route table under /api/v1 (each route with
what it requires of its caller), authentication middleware, one error mapping.
Handlers find the node's services in ``app.state.services``."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, compile_path
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send

from scheduler0.daemon.api import (
    accounts,
    audit,
    backup,
    cluster,
    executors,
    jobs,
    observe,
    openapi,
    schedules,
)
from scheduler0.daemon.api.auth import Access, AuthMiddleware, On, Permission, guard
from scheduler0.daemon.api.describe import Body, Reply, RouteSpec
from scheduler0.daemon.api.http import (
    AUDIT_ORDER,
    CONSISTENCY,
    CREDENTIALS_ORDER,
    EXECUTIONS_ORDER,
    EXECUTORS_ORDER,
    JOB_ID,
    JOB_NAME,
    JOBS_LIMIT,
    JOBS_ORDER,
    LABEL,
    LIMIT,
    OFFSET,
    ORDER_BY_DIRECTION,
    ORDER_DIRECTION,
    PROJECT_ID,
    PROJECTS_ORDER,
    SEARCH,
    SINCE,
    STATE,
    TRIGGER,
    UNTIL,
    Declared,
    Param,
    Services,
    failure,
)
from scheduler0.daemon.api.shapes import (
    AuditPage,
    Backfilled,
    ClusterStatus,
    CredentialPage,
    Deleted,
    ExecutionPage,
    ExecutorPage,
    Health,
    JobPage,
    Member,
    MemberIn,
    MemberRemoved,
    NodeStatus,
    ProjectPage,
    Status,
    Triggered,
)
from scheduler0.daemon.node import Node
from scheduler0.errors import (
    BadRequest,
    NotFound,
    Scheduler0Error,
)
from scheduler0.models import (
    ArchiveIn,
    BackfillIn,
    CredentialIn,
    CredentialOut,
    CredentialPatch,
    CredentialScope,
    DeleteIn,
    ExecutorIn,
    ExecutorOut,
    ExecutorPatch,
    JobIn,
    JobOut,
    JobPatch,
    PauseIn,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    SchedulePreview,
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


OPERATOR, PUBLIC = Permission(Access.OPERATOR), Permission(Access.PUBLIC)


def read(on: On = On.NOTHING) -> Permission:
    return Permission(Access.CLIENT, CredentialScope.READ, on)


def write(on: On) -> Permission:
    return Permission(Access.CLIENT, CredentialScope.WRITE, on)


def execute(on: On) -> Permission:
    return Permission(Access.CLIENT, CredentialScope.EXECUTE, on)


def admin(on: On) -> Permission:
    return Permission(Access.CLIENT, CredentialScope.ADMIN, on)


READ = (CONSISTENCY,)


def listing(order: Param) -> tuple[Param, ...]:
    """The parameters of a plain list ordered by ``order``."""
    return (LIMIT, OFFSET, order, ORDER_BY_DIRECTION, CONSISTENCY)


EXECUTIONS = (
    TRIGGER,
    LIMIT,
    OFFSET,
    SINCE,
    UNTIL,
    EXECUTIONS_ORDER,
    ORDER_BY_DIRECTION,
    ORDER_DIRECTION,
    CONSISTENCY,
)

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "/projects", ("POST",), accounts.create_project, write(On.NEW_PROJECT),
        "Create a project (names are unique)",
        Reply(ProjectOut, 201, description="Created"), body=Body(ProjectIn), errors=(409,),
    ),
    RouteSpec(
        "/projects", ("GET",), accounts.list_projects, read(On.LISTS),
        "List projects", Reply(ProjectPage), query=listing(PROJECTS_ORDER),
    ),
    RouteSpec(
        "/projects/{id}", ("GET",), accounts.get_project, read(On.PROJECT),
        "Get a project", Reply(ProjectOut), query=READ,
    ),
    RouteSpec(
        "/projects/{id}", ("PUT", "PATCH"), accounts.update_project, write(On.PROJECT),
        "Change a project's name or description",
        Reply(ProjectOut), body=Body(ProjectPatch), errors=(409,),
    ),
    RouteSpec(
        "/projects/{id}", ("DELETE",), accounts.delete_project, write(On.PROJECT),
        "Delete a project (refused while it has jobs); recorded in the audit log",
        Reply(Deleted), body=Body(DeleteIn, required=False), errors=(409,),
    ),
    RouteSpec(
        "/projects/{id}/signing-secret", ("POST",), accounts.rotate_signing_secret,
        admin(On.PROJECT),
        "Give a project a new signing secret: its callbacks are signed with it from now on",
        Reply(ProjectOut),
    ),
    RouteSpec(
        "/credentials", ("POST",), accounts.create_credential, OPERATOR,
        "Create a client credential (its secret is shown only here)",
        Reply(CredentialOut, 201, description="Created, with api_secret"),
        body=Body(CredentialIn, required=False),
    ),
    RouteSpec(
        "/credentials", ("GET",), accounts.list_credentials, OPERATOR,
        "List client credentials", Reply(CredentialPage), query=listing(CREDENTIALS_ORDER),
    ),
    RouteSpec(
        "/credentials/{id}", ("GET",), accounts.get_credential, OPERATOR,
        "Get a client credential", Reply(CredentialOut), query=READ,
    ),
    RouteSpec(
        "/credentials/{id}", ("PUT", "PATCH"), accounts.update_credential, OPERATOR,
        "Archive or restore a client credential",
        Reply(CredentialOut), body=Body(CredentialPatch),
    ),
    RouteSpec(
        "/credentials/{id}/archive", ("POST",), accounts.archive_credential, OPERATOR,
        "Archive a client credential (its keys stop working)", Reply(CredentialOut),
        body=Body(ArchiveIn, required=False),
    ),
    RouteSpec(
        "/credentials/{id}", ("DELETE",), accounts.delete_credential, OPERATOR,
        "Delete a client credential; recorded in the audit log", Reply(Deleted),
        body=Body(DeleteIn, required=False),
    ),
    RouteSpec(
        "/executors", ("POST",), executors.create_executor, write(On.ACCOUNT),
        "Create an executor (type webhook_url): a URL, method and secret jobs may call back"
        " through (executor_id)",
        Reply(ExecutorOut, 201, description="Created"), body=Body(ExecutorIn),
    ),
    RouteSpec(
        "/executors", ("GET",), executors.list_executors, read(),
        "List executors", Reply(ExecutorPage), query=listing(EXECUTORS_ORDER),
    ),
    RouteSpec(
        "/executors/{id}", ("GET",), executors.get_executor, read(),
        "Get an executor (its secret is never shown)", Reply(ExecutorOut), query=READ,
    ),
    RouteSpec(
        "/executors/{id}", ("PUT", "PATCH"), executors.update_executor, write(On.ACCOUNT),
        "Change an executor: the later callbacks of its jobs go to its new URL, method and"
        " secret",
        Reply(ExecutorOut), body=Body(ExecutorPatch),
    ),
    RouteSpec(
        "/executors/{id}", ("DELETE",), executors.delete_executor, write(On.ACCOUNT),
        "Delete an executor (refused while jobs use it)", Reply(Deleted),
        body=Body(DeleteIn, required=False), errors=(409,),
    ),
    RouteSpec(
        "/jobs", ("POST",), jobs.create_jobs, write(On.JOB_ITEMS),
        "Create one job or a batch (all validated first, then created atomically)",
        Reply(JobOut, 201, many=True, description="Created: one job, or an array in order"),
        body=Body(JobIn, many=True), errors=(409, 429),
    ),
    RouteSpec(
        "/jobs", ("GET",), jobs.list_jobs, read(On.LISTS),
        "List jobs, of one project or all, filtered by name, labels and text",
        Reply(JobPage),
        query=(
            PROJECT_ID, JOB_NAME, LABEL, SEARCH, JOBS_LIMIT, OFFSET, JOBS_ORDER,
            ORDER_BY_DIRECTION, CONSISTENCY,
        ),
        errors=(404,),
    ),
    RouteSpec(
        "/jobs/{id}", ("GET",), jobs.get_job, read(On.JOB), "Get a job", Reply(JobOut), query=READ,
    ),
    RouteSpec(
        "/jobs/{id}", ("PUT", "PATCH"), jobs.update_job, write(On.JOB),
        "Change a job (a new schedule applies from the next slot after now)",
        Reply(JobOut), body=Body(JobPatch), errors=(409,),
    ),
    RouteSpec(
        "/jobs/{id}", ("DELETE",), jobs.delete_job, write(On.JOB),
        "Delete a job; recorded in the audit log", Reply(Deleted),
        body=Body(DeleteIn, required=False),
    ),
    RouteSpec(
        "/jobs/{id}/pause", ("POST",), jobs.pause_job, execute(On.JOB),
        "Pause a job (no slot fires until it is resumed)", Reply(JobOut),
        body=Body(PauseIn, required=False),
    ),
    RouteSpec(
        "/jobs/{id}/resume", ("POST",), jobs.resume_job, execute(On.JOB),
        "Resume a paused job", Reply(JobOut), body=Body(PauseIn, required=False),
    ),
    RouteSpec(
        "/jobs/{id}/run", ("POST",), jobs.run_now, execute(On.JOB),
        "Run a job once now, outside its schedule",
        Reply(Triggered, 202, description="Accepted"), errors=(409,),
    ),
    RouteSpec(
        "/jobs/{id}/backfill", ("POST",), jobs.backfill, execute(On.JOB),
        "Fire every slot of the job's grid in a past range once, with the execution id its"
        " scheduled run would have had (slots already run are not run again), at a bounded pace",
        Reply(Backfilled, 202, description="Accepted"), body=Body(BackfillIn), errors=(409,),
    ),
    RouteSpec(
        "/jobs/{id}/executions", ("GET",), jobs.job_executions, read(On.JOB),
        "A job's executions, newest first", Reply(ExecutionPage), query=EXECUTIONS,
    ),
    RouteSpec(
        "/schedules/preview", ("GET",), schedules.preview, read(),
        "The next runs of a spec in a timezone, or the 422 creating a job with it would get",
        Reply(SchedulePreview),
        query=(schedules.SPEC, schedules.TIMEZONE, schedules.COUNT, schedules.AFTER),
    ),
    RouteSpec(
        "/executions", ("GET",), observe.list_executions, read(On.LISTS),
        "Executions, newest first, filtered",
        Reply(ExecutionPage), query=(JOB_ID, PROJECT_ID, STATE, *EXECUTIONS),
    ),
    RouteSpec(
        "/audit", ("GET",), audit.list_audit, read(On.LISTS),
        "Who deleted what, and when: the audit log, newest first (operators see every record;"
        " a credential, the records of its projects)",
        Reply(AuditPage), query=(audit.KIND, PROJECT_ID, *listing(AUDIT_ORDER)),
    ),
    RouteSpec(
        "/healthcheck", ("GET",), observe.healthcheck, PUBLIC,
        "This node's health (no auth, no secrets)", Reply(Health),
    ),
    RouteSpec(
        "/status", ("GET",), observe.status, read(),
        "This node: raft, buckets, queue depth, fire lag", Reply(Status),
    ),
    RouteSpec(
        "/metrics", ("GET",), observe.metrics, OPERATOR,
        "Prometheus metrics of this node (text exposition format)",
        Reply(None, media_type="text/plain", enveloped=False),
    ),
    RouteSpec(
        "/cluster", ("GET",), cluster.status, read(),
        "Every member's status, gathered over peer auth", Reply(ClusterStatus),
    ),
    RouteSpec(
        "/peer/status", ("GET",), cluster.peer_status, OPERATOR,
        "This node's own status, for its peers", Reply(NodeStatus),
    ),
    RouteSpec(
        "/cluster/members", ("POST",), cluster.add_member, OPERATOR,
        "Add a node to the cluster", Reply(Member, 201, description="Added"), body=Body(MemberIn),
    ),
    RouteSpec(
        "/cluster/members/{id}", ("DELETE",), cluster.remove_member, OPERATOR,
        "Remove a node from the cluster (by node id)", Reply(MemberRemoved),
    ),
    RouteSpec(
        "/backup", ("GET",), backup.download, OPERATOR,
        "A backup of the replicated state at one raft index (a versioned container:"
        " magic SCHED0BK, format version, JSON header, SQLite database; see"
        " `scheduler0 backup`)",
        Reply(None, media_type="application/octet-stream", enveloped=False),
        errors=(507,),
    ),
    RouteSpec(
        "/openapi.json", ("GET",), openapi.openapi_json, PUBLIC,
        "This document (OpenAPI 3.1)", Reply(None, enveloped=False),
    ),
    RouteSpec(
        "/docs", ("GET",), openapi.docs, PUBLIC,
        "A page showing this document (self-contained: no other site is reached)",
        Reply(None, media_type="text/html", enveloped=False),
    ),
)  # fmt: skip
"""Every route of the API, what it requires of its caller (the permission
table: operator, or a client scope and the project it acts on), reads and
answers, in one place: the routes, their guards, the input checks
(``http.Declared``), the OpenAPI document and the permission-matrix test are
all made from it."""


_PATHS = [(compile_path(openapi.BASE_PATH + spec.path)[0], spec.methods) for spec in ROUTES]


def allowed_methods(path: str) -> str:
    """The ``Allow`` header of a 405 (RFC 9110): every method of every route on
    ``path``, not only those of the first route Starlette matched."""
    methods = {method for regex, found in _PATHS if regex.match(path) for method in found}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def _on_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, Scheduler0Error):
        return failure(exc)
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return failure(NotFound(f"no route {request.method} {request.url.path}"))
        if exc.status_code == 405:
            refused = failure(MethodNotAllowed(f"{request.method} is not allowed here"))
            refused.headers["allow"] = allowed_methods(request.url.path)
            return refused
        error = BadRequest(str(exc.detail))
        error.status = exc.status_code
        return failure(error)
    raise exc  # not ours to map: _CatchAll answers it


def _route(spec: RouteSpec) -> Route:
    """``spec``'s handler behind its access check, with what it declares in the
    request's scope for the input helpers."""
    guarded = guard(spec.endpoint, spec.permission)
    declared = spec.declared()

    @functools.wraps(guarded)
    async def endpoint(request: Request) -> Response:
        request.scope[Declared.SCOPE_KEY] = declared
        return await guarded(request)

    return Route(spec.path, endpoint, methods=list(spec.methods))


def create_app(node: Node) -> Starlette:
    """The API of ``node``; its background work runs for the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start_background()
        try:
            yield
        finally:
            await node.stop_background()

    return build_app(
        Services(
            node.settings,
            node.queries,
            node.writes,
            node.status,
            node.metrics,
            node.backups,
            holding=node.machine.holding,
            settle=node.machine.settle,
        ),
        lifespan=lifespan,
    )


def build_app(services: Services, lifespan: Lifespan[Starlette] | None = None) -> Starlette:
    """The API over ``services`` (``create_app`` gives it a node's)."""
    app = Starlette(
        routes=[Mount(openapi.BASE_PATH, routes=[_route(spec) for spec in ROUTES])],
        exception_handlers={
            Scheduler0Error: _on_error,
            HTTPException: _on_error,
        },
        middleware=[Middleware(_CatchAll), Middleware(AuthMiddleware)],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.openapi = openapi.encode(openapi.build(ROUTES, services.settings))
    return app
