"""The audit log (``GET /audit``) and the body of a delete.

Who deleted what, and when: every delete through the API carries its
``deleted_by`` (the body's ``deletedBy``, else the caller), and the state
machine records each deleted object with it (``state/handlers/audit.py``).
Operators see every record. A client credential (``read``) sees the records
of the projects it may see, and never a record of no project (a deleted
credential): the same rule as every other list.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from scheduler0.daemon.api import views
from scheduler0.daemon.api.auth import actor, is_operator, principal, visible
from scheduler0.daemon.api.http import (
    AUDIT_ORDER,
    ORDER_BY_DIRECTION,
    PROJECT_ID,
    Param,
    choice_param,
    has_body,
    id_param,
    json_body,
    ok_off_loop,
    order_param,
    paging,
    read_barrier,
    services,
)
from scheduler0.models import AUDIT_KINDS, DeleteIn, parse_one

KIND = Param(
    "kind",
    "Only records of this kind of object: project, job, credential (operators only see"
    " those) or executor.",
    type="string",
    choices=AUDIT_KINDS,
)

_DELETE_BODY = 16 * 1024
"""The largest body a delete reads (who deletes)."""


async def deleted_by(request: Request) -> dict[str, str]:
    """Who deletes, as a delete command's fields: ``deleted_by``, the optional
    body's ``deletedBy`` (``deleted_by``), else the caller (``auth.actor``);
    ``deleted_as``, the caller the node authenticated (``auth.principal``),
    which no body sets. A delete without a body is the same delete."""
    raw = await json_body(request, _DELETE_BODY) if has_body(request) else {}
    given = parse_one(DeleteIn, raw).deleted_by
    return {"deleted_by": actor(request, given), "deleted_as": principal(request)}


async def list_audit(request: Request) -> Response:
    queries = services(request).queries
    kind = choice_param(request, KIND)
    project_id = id_param(request, PROJECT_ID)
    limit, offset = paging(request)
    order = order_param(request, AUDIT_ORDER, ORDER_BY_DIRECTION)
    shown = visible(request)
    every_record = is_operator(request)
    await read_barrier(request)

    def page() -> dict[str, Any]:
        rows = queries.audit_records(
            kind=kind,
            project_id=project_id,
            limit=limit,
            offset=offset,
            visible=shown,
            every_record=every_record,
            order=order,
        )
        return views.page_out(rows, "records", views.audit_record_out)

    return await ok_off_loop(page)
