"""Projects and client credentials."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from scheduler0.daemon.api import views
from scheduler0.daemon.api.audit import deleted_by
from scheduler0.daemon.api.auth import actor, principal, shows_secrets, visible
from scheduler0.daemon.api.http import (
    CREDENTIALS_ORDER,
    ORDER_BY_DIRECTION,
    PROJECTS_ORDER,
    has_body,
    json_body,
    off_loop,
    ok,
    order_param,
    paging,
    path_id,
    read_barrier,
    services,
)
from scheduler0.daemon.api.idempotent import idempotency_key, replay_headers
from scheduler0.daemon.security import hash_secret, new_api_key, new_api_secret, new_signing_secret
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.queries import Queries
from scheduler0.errors import FieldError
from scheduler0.models import (
    MAX_LIFETIME_SECONDS,
    ArchiveIn,
    CredentialIn,
    CredentialPatch,
    ProjectIn,
    ProjectPatch,
    invalid,
    parse_one,
)

_SMALL_BODY = 64 * 1024

# -- projects ------------------------------------------------------------------------------


async def create_project(request: Request) -> Response:
    svc = services(request)
    raw = await json_body(request, _SMALL_BODY)
    body = parse_one(ProjectIn, raw)
    result = await svc.writes.propose(
        c.ProjectCreated(
            now=time.time(),
            name=body.name,
            description=body.description,
            signing_secret=new_signing_secret(),
            idempotency=idempotency_key(request, "POST /projects", raw),
            created_by=actor(request, body.created_by),
        )
    )
    project = await off_loop(svc.queries.project, result["id"])
    return ok(views.project_out(project, shows_secrets(request)), 201, replay_headers(result))


async def list_projects(request: Request) -> Response:
    queries = services(request).queries
    limit, offset = paging(request)
    order = order_param(request, PROJECTS_ORDER, ORDER_BY_DIRECTION)
    secrets = shows_secrets(request)
    await read_barrier(request)
    page = await off_loop(queries.projects, limit, offset, visible(request), order)
    return ok(views.page_out(page, "projects", lambda row: views.project_out(row, secrets)))


async def get_project(request: Request) -> Response:
    project_id = path_id(request)
    await read_barrier(request)
    row = services(request).queries.project(project_id)
    return ok(views.project_out(row, shows_secrets(request)))


async def update_project(request: Request) -> Response:
    svc = services(request)
    project_id = path_id(request)
    body = parse_one(ProjectPatch, await json_body(request, _SMALL_BODY))
    await svc.writes.propose(
        c.ProjectUpdated(
            now=time.time(),
            project_id=project_id,
            name=body.name,
            description=body.description,
            modified_by=actor(request, body.modified_by),
        )
    )
    return ok(views.project_out(svc.queries.project(project_id), shows_secrets(request)))


async def rotate_signing_secret(request: Request) -> Response:
    """A new signing secret for the project (admin): callbacks are signed with
    it from the next fire on; receivers should accept both while they switch."""
    svc = services(request)
    project_id = path_id(request)
    await svc.writes.propose(
        c.ProjectUpdated(
            now=time.time(),
            project_id=project_id,
            signing_secret=new_signing_secret(),
            modified_by=principal(request),
        )
    )
    return ok(views.project_out(svc.queries.project(project_id)))


async def delete_project(request: Request) -> Response:
    project_id = path_id(request)
    who = await deleted_by(request)
    await services(request).writes.propose(
        c.ProjectDeleted(now=time.time(), project_id=project_id, **who)
    )
    return ok({"id": project_id, "deleted": True})


# -- credentials (operator routes) ---------------------------------------------------------


async def create_credential(request: Request) -> Response:
    svc = services(request)
    raw = await json_body(request, _SMALL_BODY) if has_body(request) else {}
    body = parse_one(CredentialIn, raw)
    now = time.time()
    expires_at = _expiry(body, now)
    _check_projects(body, svc.queries)
    api_key, api_secret = new_api_key(), new_api_secret()
    assert svc.settings.secret_key is not None
    result = await svc.writes.propose(
        c.CredentialCreated(
            now=now,
            api_key=api_key,
            secret_hash=hash_secret(svc.settings.secret_key, api_secret),
            description=body.description,
            scopes=None if body.scopes is None else [str(scope) for scope in body.scopes],
            projects=body.projects,
            expires_at=expires_at,
            created_by=actor(request, body.created_by),
            archived=body.archived,
        )
    )
    data = views.credential_out(svc.queries.credential(result["id"]))
    data["api_secret"] = api_secret  # shown once; only its keyed hash is stored
    return ok(data, 201)


async def list_credentials(request: Request) -> Response:
    queries = services(request).queries
    limit, offset = paging(request)
    order = order_param(request, CREDENTIALS_ORDER, ORDER_BY_DIRECTION)
    await read_barrier(request)
    page = await off_loop(queries.credentials, limit, offset, order)
    return ok(views.page_out(page, "credentials", views.credential_out))


async def get_credential(request: Request) -> Response:
    credential_id = path_id(request)
    await read_barrier(request)
    return ok(views.credential_out(services(request).queries.credential(credential_id)))


async def update_credential(request: Request) -> Response:
    svc = services(request)
    credential_id = path_id(request)
    body = parse_one(CredentialPatch, await json_body(request, _SMALL_BODY))
    await svc.writes.propose(
        c.CredentialArchived(
            now=time.time(),
            credential_id=credential_id,
            archived=body.archived,
            modified_by=actor(request, body.modified_by),
        )
    )
    return ok(views.credential_out(svc.queries.credential(credential_id)))


async def archive_credential(request: Request) -> Response:
    svc = services(request)
    credential_id = path_id(request)
    raw = await json_body(request, _SMALL_BODY) if has_body(request) else {}
    by = actor(request, parse_one(ArchiveIn, raw).archived_by)
    await svc.writes.propose(
        c.CredentialArchived(
            now=time.time(), credential_id=credential_id, archived=True, modified_by=by
        )
    )
    return ok(views.credential_out(svc.queries.credential(credential_id)))


async def delete_credential(request: Request) -> Response:
    credential_id = path_id(request)
    who = await deleted_by(request)
    await services(request).writes.propose(
        c.CredentialDeleted(
            now=time.time(),
            credential_id=credential_id,
            **who,
        )
    )
    return ok({"id": credential_id, "deleted": True})


def _expiry(body: CredentialIn, now: float) -> float | None:
    """When the credential stops working: ``expires_at``, or
    ``expires_in_seconds`` from ``now``; in the future and bounded."""
    if body.expires_at is not None and body.expires_in_seconds is not None:
        raise invalid(
            [FieldError("expires_in_seconds", "give expires_at or expires_in_seconds, not both")]
        )
    if body.expires_in_seconds is not None:
        return now + body.expires_in_seconds
    if body.expires_at is not None and not now < body.expires_at <= now + MAX_LIFETIME_SECONDS:
        raise invalid([FieldError("expires_at", "must be in the future, and within 100 years")])
    return body.expires_at


def _check_projects(body: CredentialIn, queries: Queries) -> None:
    """Every project the credential is limited to exists."""
    if not body.projects:
        return
    known = queries.existing_project_ids(body.projects)
    missing = [project_id for project_id in body.projects if project_id not in known]
    if missing:
        shown = ", ".join(map(str, missing[:5]))
        raise invalid([FieldError("projects", f"no project with id {shown}")])
