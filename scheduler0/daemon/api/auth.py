"""Who is calling, decided once per request by middleware; what each route
requires, declared with the route.

``AuthMiddleware`` reads the credentials of every HTTP request and puts the
outcome in ``scope["user"]``: a ``Caller`` (client or operator) or the
``Scheduler0Error`` that refuses them. It never answers by itself, so a route
that needs no caller (the health check) ignores a bad credential. Each
route is wrapped by ``guard(endpoint, Access)`` from the route table in
``app.py``; the guard raises the refusal, ``Forbidden`` when the caller's
kind or scopes are not enough for the route, and ``NotFound`` (the very answer
a missing one gets) for a project or job outside a credential's projects.
Lists leave the others' rows out themselves, with the caller's ``projects``.

Client: ``x-api-key`` + ``x-secret-key``. Operator (or peer): HTTP Basic with
the node's AuthUsername/AuthPassword plus ``x-peer: cmd|peer``.
"""

from __future__ import annotations

import base64
import enum
import time
from dataclasses import dataclass
from functools import wraps
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from scheduler0.daemon.api.http import (
    CONSISTENCY,
    Declared,
    Handler,
    Services,
    path_id,
    read_barrier,
    services,
)
from scheduler0.daemon.api.turns import Share, share_off_loop
from scheduler0.daemon.security import same_text, secret_matches
from scheduler0.errors import Forbidden, NoQuorum, NotFound, Scheduler0Error, Unauthorized
from scheduler0.models import CredentialScope


class CallerKind(enum.StrEnum):
    CLIENT = "client"
    OPERATOR = "operator"


class Access(enum.Enum):
    """What a route requires of its caller."""

    PUBLIC = "public"
    """No credentials needed (the health check)."""
    CLIENT = "client"
    """A valid client credential, or an operator."""
    OPERATOR = "operator"
    """An operator (or a peer node): client keys get 403."""


class On(enum.Enum):
    """Which project a route acts on: how the guard (or the route's query)
    keeps a credential limited to some projects away from the others."""

    NOTHING = "nothing"
    """No project's data (the node's status)."""
    LISTS = "lists"
    """A list: the others' rows are left out by the query (totals too)."""
    NEW_PROJECT = "new project"
    """Creates a project: a credential limited to some projects gets 403."""
    PROJECT = "project"
    """The project ``{id}`` of the path: another's answers 404."""
    JOB = "job"
    """The job ``{id}`` of the path, by its project: another's answers 404."""
    ACCOUNT = "account"
    """Changes an object of the whole account (an executor, which jobs of
    every project may use): a credential limited to some projects gets 403."""
    JOB_ITEMS = "job items"
    """Each item's ``project_id`` (``POST /jobs``): another's is refused like a
    missing project (422 naming the item's field)."""


@dataclass(frozen=True)
class Permission:
    """One row of the permission table: who may call a route, with which scope,
    acting on which project. Every route of ``app.ROUTES`` has one."""

    access: Access
    scope: CredentialScope | None = None
    """The scope a client credential needs (``admin`` stands for every scope)."""
    on: On = On.NOTHING

    def __post_init__(self) -> None:
        if (self.access is Access.CLIENT) is (self.scope is None):
            raise ValueError("a client route names its scope; no other route has one")
        if self.access is not Access.CLIENT and self.on is not On.NOTHING:
            raise ValueError("only client routes act on projects")


ALL_SCOPES = frozenset(CredentialScope)


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    credential_id: int | None = None
    scopes: frozenset[CredentialScope] = ALL_SCOPES
    projects: frozenset[int] | None = None
    """The projects a credential is limited to; None: every project."""

    def may(self, scope: CredentialScope) -> bool:
        return scope in self.scopes or CredentialScope.ADMIN in self.scopes

    def sees(self, project_id: int) -> bool:
        return self.projects is None or project_id in self.projects

    # starlette's ``request.user`` protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return f"{self.kind}:{self.credential_id or ''}"


def identify(conn: HTTPConnection) -> Caller | Scheduler0Error:
    """The caller of ``conn``, or the error that refuses its credentials."""
    svc: Services = conn.scope["app"].state.services
    settings = svc.settings
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return Unauthorized("malformed basic authorization header")
        if conn.headers.get("x-peer") not in ("cmd", "peer"):
            return Unauthorized("operator requests need the x-peer header (cmd or peer)")
        if (
            settings.auth_username
            and settings.auth_password
            and same_text(user, settings.auth_username)
            and same_text(password, settings.auth_password)
        ):
            return Caller(CallerKind.OPERATOR)
        return Unauthorized("wrong operator username or password")
    api_key = conn.headers.get("x-api-key")
    api_secret = conn.headers.get("x-secret-key")
    if not api_key or not api_secret:
        return Unauthorized("missing credentials: send x-api-key and x-secret-key")
    row = svc.queries.credential_by_key(api_key)
    assert settings.secret_key is not None
    if row is None or not secret_matches(settings.secret_key, api_secret, row["secret_hash"]):
        if not svc.status.ready:
            # A node still rebuilding its replica may not hold the key yet.
            return NoQuorum("this node is starting and has not caught up yet; retry shortly")
        return Unauthorized("unknown api key or wrong secret")
    if row["archived"]:
        return Unauthorized("this credential is archived")
    if row["expires_at"] is not None and row["expires_at"] <= time.time():
        return Unauthorized("this credential has expired")
    return Caller(CallerKind.CLIENT, row["id"], _scopes(row["scopes"]), _projects(row["projects"]))


def _scopes(stored: str | None) -> frozenset[CredentialScope]:
    """NULL: a credential made before scopes, or with none asked: all of them."""
    return ALL_SCOPES if stored is None else frozenset(map(CredentialScope, orjson.loads(stored)))


def _projects(stored: str | None) -> frozenset[int] | None:
    return None if stored is None else frozenset(orjson.loads(stored))


class AuthMiddleware:
    """Identify the caller of every HTTP request into ``scope["user"]``: a
    ``Caller``, or the error that refuses its credentials (raised only by a
    route that needs a caller). The request's work off the event loop takes
    that caller's share (``share_key``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = scope["user"] = identify(HTTPConnection(scope))
        svc: Services = scope["app"].state.services
        if isinstance(user, Caller) and svc.holding():
            # Its reads would write the held fires first: here, off the loop.
            await run_in_threadpool(svc.settle)
        read = scope["method"] in ("GET", "HEAD")
        with share_off_loop(Share(svc.shares, share_key(user, scope), refuse=read)):
            await self.app(scope, receive, send)


def share_key(user: Caller | Scheduler0Error, scope: Scope) -> str:
    """Whose share a request's work off the loop takes: its credential's; an
    operator's or an unidentified caller's by its peer address (the CLI, the
    console and a metrics scraper all authenticate as the operator)."""
    client = scope.get("client")
    address = client[0] if client else ""
    if isinstance(user, Caller):
        who = principal_of(user)
        return f"{who}:{address}" if user.kind is CallerKind.OPERATOR else who
    return f"anonymous:{address}"


def caller(request: Request) -> Caller:
    """The request's caller; raises the refusal if its credentials are not good."""
    user = request.scope.get("user")
    if isinstance(user, Scheduler0Error):
        raise user
    if not isinstance(user, Caller):
        raise Unauthorized("missing credentials: send x-api-key and x-secret-key")
    return user


OPERATOR_PRINCIPAL = "operator"
"""Who an operator (HTTP Basic) is in the audit fields."""


def principal(request: Request) -> str:
    """The caller as the audit fields record it when a body names nobody:
    ``credential:<id>`` for a client credential (the id of ``GET
    /credentials/{id}``), ``operator`` for an operator."""
    return principal_of(caller(request))


def principal_of(who: Caller) -> str:
    if who.kind is CallerKind.CLIENT:
        return f"credential:{who.credential_id}"
    return OPERATOR_PRINCIPAL


def actor(request: Request, given: str | None) -> str:
    """Who did it: ``given`` (a body's ``createdBy``/``modifiedBy``/
    ``deletedBy``) unless it is left out or empty, else the caller."""
    return given if given else principal(request)


def is_operator(request: Request) -> bool:
    return caller(request).kind is CallerKind.OPERATOR


def visible(request: Request) -> frozenset[int] | None:
    """The projects the caller may see (None: every project), for lists."""
    return caller(request).projects


def shows_secrets(request: Request) -> bool:
    """Projects' signing secrets are for operators and ``admin`` credentials."""
    return caller(request).may(CredentialScope.ADMIN)


def guard(endpoint: Handler, permission: Permission) -> Handler:
    """``endpoint`` behind its route's permission: 401 without a good
    credential, 403 for a kind or scope too weak, 404 for a project or job
    outside the credential's projects."""
    if permission.access is Access.PUBLIC:
        return endpoint

    @wraps(endpoint)
    async def guarded(request: Request) -> Response:
        who = caller(request)
        if permission.access is Access.OPERATOR and who.kind is not CallerKind.OPERATOR:
            raise Forbidden("this route needs operator authentication (HTTP Basic + x-peer)")
        if permission.scope is not None and not who.may(permission.scope):
            raise Forbidden(f"this route needs a credential with the {permission.scope} scope")
        if who.projects is not None:
            await _within_projects(request, who, permission.on)
        return await endpoint(request)

    return guarded


async def _within_projects(request: Request, who: Caller, on: On) -> None:
    """Refuse a project-limited caller what lies outside its projects, with
    the answer a missing project or job gets (its existence is not revealed).

    A job this replica does not hold is refused too, not passed on: it may be
    another project's job that is not applied here yet, which the handler
    would otherwise act on (a write) or read after its barrier (a strong read,
    whose barrier therefore runs first)."""
    if on is On.NEW_PROJECT:
        raise Forbidden("a credential limited to some projects cannot create projects")
    if on is On.ACCOUNT:
        raise Forbidden(
            "a credential limited to some projects cannot change executors (they serve every"
            " project)"
        )
    if on is On.PROJECT:
        project_id = path_id(request)
        if not who.sees(project_id):
            raise NotFound(f"no project with id {project_id}")
    elif on is On.JOB:
        job_id = path_id(request)
        declared = request.scope.get(Declared.SCOPE_KEY)
        if isinstance(declared, Declared) and CONSISTENCY in declared.query:
            await read_barrier(request)
        owner = services(request).queries.job_project(job_id)
        if owner is None or not who.sees(owner):
            raise NotFound(f"no job with id {job_id}")


def node_status_for(request: Request, node_status: dict[str, Any]) -> dict[str, Any]:
    """``node_status`` as the caller may see it. Its ``counts`` (the cluster's
    totals) and ``worst_destinations`` (the callback hosts in trouble) are every
    project's: a credential limited to some projects gets them empty, as they
    would show it other tenants' size and receivers (an unreachable member's
    entry, which has neither, stays without them)."""
    if caller(request).projects is None:
        return node_status
    hidden: dict[str, Any] = {"counts": {}, "worst_destinations": []}
    return {**node_status, **{k: v for k, v in hidden.items() if k in node_status}}
