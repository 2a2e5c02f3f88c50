"""The OpenAPI 3.1 document of the API, written from the route table and the
pydantic models that serve it (never by hand), and the page that shows it.

``GET /api/v1/openapi.json`` answers the document as it is (no envelope);
``GET /api/v1/docs`` a self-contained page (``static/docs.html``, shipped in the
package) that fetches it and lists routes, parameters and schemas, with no
request to anywhere but this node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.resources import files
from typing import Any

import orjson
from pydantic import AliasChoices, BaseModel
from starlette.requests import Request
from starlette.responses import Response

from scheduler0 import __version__
from scheduler0.config import Settings
from scheduler0.daemon.api.auth import Access
from scheduler0.daemon.api.describe import Body, Reply, RouteSpec
from scheduler0.daemon.api.http import MAX_ID, Param
from scheduler0.daemon.api.shapes import ErrorEnvelope

OPENAPI_VERSION = "3.1.0"
BASE_PATH = "/api/v1"
REF = "#/components/schemas/{model}"

ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed or empty JSON body (bad_request)."),
    401: ("Unauthorized", "Missing, wrong or archived credentials (unauthorized)."),
    403: ("Forbidden", "A client key on an operator route (forbidden)."),
    404: ("NotFound", "Unknown id (not_found)."),
    408: ("RequestTimeout", "The request body paused for 10 s (request_timeout)."),
    409: ("Conflict", "Duplicate name, project still has jobs, run already there (conflict)."),
    413: ("PayloadTooLarge", "Body or batch over the node's limit (payload_too_large)."),
    415: (
        "UnsupportedMediaType",
        "A body whose content-type is not JSON (unsupported_media_type).",
    ),
    422: (
        "ValidationFailed",
        "Invalid fields, each named in details (with the item's index in a batch)"
        " (validation_failed).",
    ),
    429: (
        "TooManyRequests",
        "Too many of this caller's requests (large creates, or any work done off the"
        " node's event loop) already wait for their turn; retry (too_many_requests).",
    ),
    503: ("NoQuorum", "The cluster cannot commit or read-after-commit now; retry (no_quorum)."),
    507: (
        "InsufficientStorage",
        "A backup's copy would not fit beside the replica (insufficient_storage).",
    ),
}
"""The documented error statuses; every error answer is ``ErrorEnvelope``."""

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "A client credential's api key (sent with x-secret-key).",
    },
    "apiSecret": {
        "type": "apiKey",
        "in": "header",
        "name": "x-secret-key",
        "description": "The credential's secret, shown once when it was created.",
    },
    "operatorBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "The node's AuthUsername and AuthPassword (sent with x-peer).",
    },
    "operatorPeer": {
        "type": "apiKey",
        "in": "header",
        "name": "x-peer",
        "description": "cmd for an operator, peer for another node.",
    },
}
CLIENT_SECURITY: dict[str, list[str]] = {"apiKey": [], "apiSecret": []}
OPERATOR_SECURITY: dict[str, list[str]] = {"operatorBasic": [], "operatorPeer": []}
SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.PUBLIC: [],
    Access.CLIENT: [CLIENT_SECURITY, OPERATOR_SECURITY],
    Access.OPERATOR: [OPERATOR_SECURITY],
}

DESCRIPTION = """\
A distributed cron-job server. Every answer is an envelope: `{"success": true, "data": ...}`,
or `{"success": false, "data": null, "error": {"code", "message", "details": [{"field",
"message", "index"}]}}`.

Clients authenticate with `x-api-key` + `x-secret-key`; operators (and peer nodes) with
HTTP Basic + `x-peer: cmd`. Each operation lists which it accepts, and `x-scope` names
the scope a client credential needs (`read`, `write`, `execute`; `admin` has them all).
A credential limited to some projects gets 404 for the others' projects and jobs, as
if they did not exist, and never sees them in a list.

Bodies are documented in snake_case; the camelCase spellings of the original server
(`projectId`, `callbackUrl`, `executionType`, `jobId`, `createdBy`, `modifiedBy`,
`deletedBy`, and the policies' `startAt`, `endAt`,
`maxRuns`, `jitterSeconds`, ...) are accepted too (not both at once).
Reads are local to the node answering; add `?consistency=strong` to read after
everything committed so far.

The official clients' fields are read into ours: a job's `startDate`, `endDate`,
`retryMax`, `status` and `timezoneOffset` (see each field), every list's `orderBy` and
`orderByDirection`, the executions' `startDate`, `endDate` and `orderDirection`. Every
DELETE accepts a JSON body (`{"deletedBy": ...}`). Every request may carry an
`X-Account-ID` header: a cluster is one account, so any value is accepted and ignored.
"""


EXAMPLES: dict[str, Any] = {
    "ProjectIn": {"name": "billing", "description": "invoices and reminders", "created_by": "ana"},
    "ProjectPatch": {"description": "invoices, reminders and dunning", "modified_by": "ana"},
    "CredentialIn": {"description": "billing service", "created_by": "ops"},
    "CredentialPatch": {"archived": True, "modified_by": "ops"},
    "ArchiveIn": {"archived_by": "ops"},
    "DeleteIn": {"deleted_by": "ana"},
    "JobIn": {
        "project_id": 1,
        "spec": "*/5 * * * *",
        "timezone": "Europe/Paris",
        "data": {"invoice": 42},
        "callback_url": "http://127.0.0.1:3000/cb",
    },
    "JobPatch": {"spec": "0 9 * * 1-5", "max_runs": 10, "end_at": "2030-01-01T00:00:00Z"},
    "PauseIn": {"note": "the receiver is down for maintenance"},
    "ExecutorIn": {
        "name": "billing webhook",
        "type": "webhook_url",
        "webhook_url": "http://127.0.0.1:3000/hooks",
        "webhook_method": "PUT",
        "webhook_secret": "a long random string",
        "created_by": "ops",
    },
    "ExecutorPatch": {"webhook_url": "http://127.0.0.1:3001/hooks", "modified_by": "ops"},
    "MemberIn": {
        "node_id": 2,
        "address": "http://127.0.0.1:9092",
        "raft_address": "127.0.0.1:7072",
    },
}
"""One request body per input model, shown with the operation (and sent by the
schemathesis test's examples phase)."""


class Components:
    """``components/schemas``, filled from the models' own JSON schemas."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str) -> dict[str, str]:
        schema = model.model_json_schema(
            ref_template=REF, mode="validation" if mode == "validation" else "serialization"
        )
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        if mode == "validation":
            _describe_aliases(model, schema)
        self._add(model.__name__, schema)
        return {"$ref": REF.format(model=model.__name__)}

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        known = self.schemas.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas named {name}")


def _describe_aliases(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Name each field's camelCase spelling in its description."""
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if not isinstance(alias, AliasChoices):
            continue
        others = [str(choice) for choice in alias.choices if choice != name]
        prop = schema.get("properties", {}).get(name)
        if others and prop is not None:
            also = f"Also accepted as {', '.join(others)}."
            prop["description"] = f"{prop['description']} {also}" if "description" in prop else also


def _param_schema(param: Param) -> dict[str, Any]:
    schema: dict[str, Any]
    if param.type == "integer":
        schema = {"type": "integer"}
        if param.minimum is not None:
            schema["minimum"] = param.minimum
        if param.maximum is not None:
            schema["maximum"] = param.maximum
    elif param.type == "number|string":
        schema = {"anyOf": [{"type": "number"}, {"type": "string"}]}
    else:
        schema = {"type": "string"}
        if param.choices:
            schema["enum"] = list(param.choices)
        if param.max_length is not None:
            schema["maxLength"] = param.max_length
    if param.default is not None:
        schema["default"] = param.default
    if param.repeated:
        return {"type": "array", "items": schema}
    return schema


def _parameters(spec: RouteSpec) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": "Numeric id.",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        }
        for name in spec.path_params
    ]
    for param in spec.query:
        out.append(
            {
                "name": param.name,
                "in": "query",
                "required": False,
                "allowEmptyValue": True,  # an empty value is the same as none
                "description": param.description,
                "schema": _param_schema(param),
            }
        )
    return out


def _one_or_many(schema: dict[str, Any], many: bool, max_items: int | None) -> dict[str, Any]:
    if not many:
        return schema
    array: dict[str, Any] = {"type": "array", "items": schema, "minItems": 1}
    if max_items is not None:
        array["maxItems"] = max_items
    return {"oneOf": [schema, array]}


def _request_body(body: Body, components: Components, max_items: int) -> dict[str, Any]:
    schema = _one_or_many(
        components.ref(body.model, "validation"), body.many, max_items if body.many else None
    )
    media: dict[str, Any] = {"schema": schema}
    if body.model.__name__ in EXAMPLES:
        media["example"] = EXAMPLES[body.model.__name__]
    out: dict[str, Any] = {"required": body.required, "content": {"application/json": media}}
    doc = (body.model.__doc__ or "").strip()
    if body.many:
        doc = "One object, or an array of them (all validated, then created in one command)."
    if doc:
        out["description"] = doc
    return out


def _success(reply: Reply, components: Components) -> dict[str, Any]:
    if not reply.enveloped:
        content: dict[str, Any] = {reply.media_type: {"schema": {"type": "object"}}}
        if reply.media_type != "application/json":
            content = {reply.media_type: {"schema": {"type": "string"}}}
        return {"description": reply.description, "content": content}
    data: dict[str, Any] = (
        {} if reply.model is None else components.ref(reply.model, "serialization")
    )
    envelope = {
        "type": "object",
        "required": ["success", "data"],
        "properties": {
            "success": {"const": True},
            "data": _one_or_many(data, reply.many, None),
        },
    }
    return {"description": reply.description, "content": {reply.media_type: {"schema": envelope}}}


def _operation_id(spec: RouteSpec, method: str, taken: set[str]) -> str:
    """The handler's name (its module's first when two share it; the method's
    last for a route of several methods)."""
    name = getattr(spec.endpoint, "__name__", "operation")
    if name in taken:
        name = f"{spec.endpoint.__module__.rsplit('.', 1)[-1]}_{name}"
    if len(spec.methods) > 1:
        name = f"{name}_{method.lower()}"
    if name in taken:
        raise ValueError(f"two operations named {name}")
    taken.add(name)
    return name


def _tag(path: str) -> str:
    first = path.strip("/").split("/")[0]
    return (
        first if first in {"projects", "credentials", "jobs", "executions", "cluster"} else "node"
    )


def _scope(spec: RouteSpec) -> dict[str, str]:
    """The client scope the operation needs and the project it acts on."""
    permission = spec.permission
    if permission.scope is None:
        return {}
    return {"x-scope": str(permission.scope), "x-acts-on": permission.on.value}


def build(routes: Iterable[RouteSpec], settings: Settings) -> dict[str, Any]:
    """The document for ``routes`` as this node serves them (``settings`` give
    the limits that show in it)."""
    components = Components()
    error_ref = components.ref(ErrorEnvelope, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for spec in routes:
        item = paths.setdefault(spec.path, {})
        for method in spec.methods:
            responses: dict[str, Any] = {str(spec.reply.status): _success(spec.reply, components)}
            for status in spec.error_statuses():
                responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
            operation: dict[str, Any] = {
                "operationId": _operation_id(spec, method, taken),
                "summary": spec.summary,
                "tags": [_tag(spec.path)],
                "security": SECURITY[spec.access],
                "parameters": _parameters(spec),
                "responses": responses,
                "x-access": spec.access.value,
                **_scope(spec),
            }
            if spec.body is not None:
                operation["requestBody"] = _request_body(
                    spec.body, components, settings.max_jobs_per_request
                )
            item[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "scheduler0",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "servers": [{"url": BASE_PATH}],
        "tags": [
            {"name": name}
            for name in ("projects", "credentials", "jobs", "executions", "cluster", "node")
        ],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "responses": {
                name: {
                    "description": description,
                    "content": {"application/json": {"schema": error_ref}},
                }
                for name, description in ERRORS.values()
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _static(name: str) -> bytes:
    return files("scheduler0.daemon.api").joinpath("static", name).read_bytes()


DOCS_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)
"""The docs page may fetch from this node only; it loads nothing else."""


async def openapi_json(request: Request) -> Response:
    document: bytes = request.app.state.openapi
    return Response(document, media_type="application/json")


async def docs(request: Request) -> Response:
    return Response(
        _static("docs.html"),
        media_type="text/html; charset=utf-8",
        headers={"content-security-policy": DOCS_POLICY},
    )


def encode(document: Mapping[str, Any]) -> bytes:
    return orjson.dumps(document)
