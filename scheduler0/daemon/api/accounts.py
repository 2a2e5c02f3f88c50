"""Projects and client credentials."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler0.daemon.api.http import (
    authenticate,
    json_body,
    ok,
    paging,
    path_id,
    read_barrier,
    require_operator,
)
from scheduler0.daemon.security import hash_secret, new_api_key, new_api_secret, new_signing_secret
from scheduler0.daemon.state import commands as c
from scheduler0.models import CredentialIn, CredentialPatch, ProjectIn, ProjectPatch, parse_one

if TYPE_CHECKING:
    from scheduler0.daemon.node import Node

_SMALL_BODY = 64 * 1024


def routes(node: Node) -> list[Route]:
    async def create_project(request: Request) -> Response:
        authenticate(request, node)
        body = parse_one(ProjectIn, await json_body(request, _SMALL_BODY))
        result = await node.propose(
            c.ProjectCreated(
                now=time.time(),
                name=body.name,
                description=body.description,
                signing_secret=new_signing_secret(),
            )
        )
        return ok(node.queries.project(result["id"]), 201)

    async def list_projects(request: Request) -> Response:
        authenticate(request, node)
        limit, offset = paging(request)
        await read_barrier(request, node)
        return ok(node.queries.projects(limit, offset))

    async def get_project(request: Request) -> Response:
        authenticate(request, node)
        project_id = path_id(request)
        await read_barrier(request, node)
        return ok(node.queries.project(project_id))

    async def update_project(request: Request) -> Response:
        authenticate(request, node)
        project_id = path_id(request)
        body = parse_one(ProjectPatch, await json_body(request, _SMALL_BODY))
        await node.propose(
            c.ProjectUpdated(
                now=time.time(),
                project_id=project_id,
                name=body.name,
                description=body.description,
            )
        )
        return ok(node.queries.project(project_id))

    async def delete_project(request: Request) -> Response:
        authenticate(request, node)
        project_id = path_id(request)
        await node.propose(c.ProjectDeleted(now=time.time(), project_id=project_id))
        return ok({"id": project_id, "deleted": True})

    async def create_credential(request: Request) -> Response:
        require_operator(request, node)
        raw = await json_body(request, _SMALL_BODY) if await _has_body(request) else {}
        body = parse_one(CredentialIn, raw)
        api_key, api_secret = new_api_key(), new_api_secret()
        assert node.settings.secret_key is not None
        result = await node.propose(
            c.CredentialCreated(
                now=time.time(),
                api_key=api_key,
                secret_hash=hash_secret(node.settings.secret_key, api_secret),
                description=body.description,
            )
        )
        data = node.queries.credential(result["id"])
        data["api_secret"] = api_secret  # shown once; only its keyed hash is stored
        return ok(data, 201)

    async def list_credentials(request: Request) -> Response:
        require_operator(request, node)
        limit, offset = paging(request)
        await read_barrier(request, node)
        return ok(node.queries.credentials(limit, offset))

    async def get_credential(request: Request) -> Response:
        require_operator(request, node)
        credential_id = path_id(request)
        await read_barrier(request, node)
        return ok(node.queries.credential(credential_id))

    async def update_credential(request: Request) -> Response:
        require_operator(request, node)
        credential_id = path_id(request)
        body = parse_one(CredentialPatch, await json_body(request, _SMALL_BODY))
        await node.propose(
            c.CredentialArchived(
                now=time.time(), credential_id=credential_id, archived=body.archived
            )
        )
        return ok(node.queries.credential(credential_id))

    async def archive_credential(request: Request) -> Response:
        require_operator(request, node)
        credential_id = path_id(request)
        await node.propose(
            c.CredentialArchived(now=time.time(), credential_id=credential_id, archived=True)
        )
        return ok(node.queries.credential(credential_id))

    async def delete_credential(request: Request) -> Response:
        require_operator(request, node)
        credential_id = path_id(request)
        await node.propose(c.CredentialDeleted(now=time.time(), credential_id=credential_id))
        return ok({"id": credential_id, "deleted": True})

    return [
        Route("/projects", create_project, methods=["POST"]),
        Route("/projects", list_projects, methods=["GET"]),
        Route("/projects/{id}", get_project, methods=["GET"]),
        Route("/projects/{id}", update_project, methods=["PUT", "PATCH"]),
        Route("/projects/{id}", delete_project, methods=["DELETE"]),
        Route("/credentials", create_credential, methods=["POST"]),
        Route("/credentials", list_credentials, methods=["GET"]),
        Route("/credentials/{id}", get_credential, methods=["GET"]),
        Route("/credentials/{id}", update_credential, methods=["PUT", "PATCH"]),
        Route("/credentials/{id}/archive", archive_credential, methods=["POST"]),
        Route("/credentials/{id}", delete_credential, methods=["DELETE"]),
    ]


async def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length != "0"
    return request.headers.get("transfer-encoding") is not None
