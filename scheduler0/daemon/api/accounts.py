"""Projects and client credentials."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from scheduler0.daemon.api import views
from scheduler0.daemon.api.http import (
    json_body,
    off_loop,
    ok,
    paging,
    path_id,
    read_barrier,
    services,
)
from scheduler0.daemon.api.idempotent import idempotency_key, replay_headers
from scheduler0.daemon.security import hash_secret, new_api_key, new_api_secret, new_signing_secret
from scheduler0.daemon.state import commands as c
from scheduler0.models import CredentialIn, CredentialPatch, ProjectIn, ProjectPatch, parse_one

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
        )
    )
    project = await off_loop(svc.queries.project, result["id"])
    return ok(views.project_out(project), 201, replay_headers(result))


async def list_projects(request: Request) -> Response:
    queries = services(request).queries
    limit, offset = paging(request)
    await read_barrier(request)
    page = await off_loop(queries.projects, limit, offset)
    return ok(views.page_out(page, "projects", views.project_out))


async def get_project(request: Request) -> Response:
    project_id = path_id(request)
    await read_barrier(request)
    return ok(views.project_out(services(request).queries.project(project_id)))


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
        )
    )
    return ok(views.project_out(svc.queries.project(project_id)))


async def delete_project(request: Request) -> Response:
    project_id = path_id(request)
    await services(request).writes.propose(c.ProjectDeleted(now=time.time(), project_id=project_id))
    return ok({"id": project_id, "deleted": True})


# -- credentials (operator routes) ---------------------------------------------------------


async def create_credential(request: Request) -> Response:
    svc = services(request)
    raw = await json_body(request, _SMALL_BODY) if _has_body(request) else {}
    body = parse_one(CredentialIn, raw)
    api_key, api_secret = new_api_key(), new_api_secret()
    assert svc.settings.secret_key is not None
    result = await svc.writes.propose(
        c.CredentialCreated(
            now=time.time(),
            api_key=api_key,
            secret_hash=hash_secret(svc.settings.secret_key, api_secret),
            description=body.description,
        )
    )
    data = views.credential_out(svc.queries.credential(result["id"]))
    data["api_secret"] = api_secret  # shown once; only its keyed hash is stored
    return ok(data, 201)


async def list_credentials(request: Request) -> Response:
    queries = services(request).queries
    limit, offset = paging(request)
    await read_barrier(request)
    page = await off_loop(queries.credentials, limit, offset)
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
        c.CredentialArchived(now=time.time(), credential_id=credential_id, archived=body.archived)
    )
    return ok(views.credential_out(svc.queries.credential(credential_id)))


async def archive_credential(request: Request) -> Response:
    svc = services(request)
    credential_id = path_id(request)
    await svc.writes.propose(
        c.CredentialArchived(now=time.time(), credential_id=credential_id, archived=True)
    )
    return ok(views.credential_out(svc.queries.credential(credential_id)))


async def delete_credential(request: Request) -> Response:
    credential_id = path_id(request)
    await services(request).writes.propose(
        c.CredentialDeleted(now=time.time(), credential_id=credential_id)
    )
    return ok({"id": credential_id, "deleted": True})


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length != "0"
    return request.headers.get("transfer-encoding") is not None
