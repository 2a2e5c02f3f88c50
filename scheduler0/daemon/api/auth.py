"""Who is calling, decided once per request by middleware; what each route
requires, declared with the route.

``AuthMiddleware`` reads the credentials of every HTTP request and puts the
outcome in ``scope["user"]``: a ``Caller`` (client or operator) or the
``Scheduler0Error`` that refuses them. It never answers by itself, so a route
that needs no caller (the health check) ignores a bad credential. Each
route is wrapped by ``guard(endpoint, Access)`` from the route table in
``app.py``; the guard raises the refusal, or ``Forbidden`` when the caller's
kind is not enough for the route.

Client: ``x-api-key`` + ``x-secret-key``. Operator (or peer): HTTP Basic with
the node's AuthUsername/AuthPassword plus ``x-peer: cmd|peer``.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from functools import wraps

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from scheduler0.daemon.api.http import Handler, Services
from scheduler0.daemon.security import same_text, secret_matches
from scheduler0.errors import Forbidden, NoQuorum, Scheduler0Error, Unauthorized


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


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    credential_id: int | None = None

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
    return Caller(CallerKind.CLIENT, row["id"])


class AuthMiddleware:
    """Identify the caller of every HTTP request into ``scope["user"]``: a
    ``Caller``, or the error that refuses its credentials (raised only by a
    route that needs a caller)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["user"] = identify(HTTPConnection(scope))
        await self.app(scope, receive, send)


def caller(request: Request) -> Caller:
    """The request's caller; raises the refusal if its credentials are not good."""
    user = request.scope.get("user")
    if isinstance(user, Scheduler0Error):
        raise user
    if not isinstance(user, Caller):
        raise Unauthorized("missing credentials: send x-api-key and x-secret-key")
    return user


def guard(endpoint: Handler, access: Access) -> Handler:
    """``endpoint`` behind its route's requirement."""
    if access is Access.PUBLIC:
        return endpoint

    @wraps(endpoint)
    async def guarded(request: Request) -> Response:
        who = caller(request)
        if access is Access.OPERATOR and who.kind is not CallerKind.OPERATOR:
            raise Forbidden("this route needs operator authentication (HTTP Basic + x-peer)")
        return await endpoint(request)

    return guarded
