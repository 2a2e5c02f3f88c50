"""The OpenAPI document is made from the route table and the models, and the
table, the handlers' input helpers and the document agree.

In process: the API app over stub services (no node, no network), called
through httpx's ASGI transport. The real node is fuzzed against the same document in
``tests/test_api_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from scheduler0.config import Settings
from scheduler0.daemon.api import app as api
from scheduler0.daemon.api import openapi
from scheduler0.daemon.api.auth import Access, Permission
from scheduler0.daemon.api.describe import Reply, RouteSpec
from scheduler0.daemon.api.http import (
    CONSISTENCY,
    LIMIT,
    Param,
    Services,
    failure,
    int_param,
    ok,
)
from scheduler0.errors import FieldError, NoQuorum, NotFound, ValidationFailed
from scheduler0.models import JobIn, ProjectIn
from tests.support.nodes import operator_headers

pytestmark = pytest.mark.unit

SETTINGS = Settings(
    SecretKey="0" * 64, AuthUsername="operator", AuthPassword="test-password", MaxJobsPerRequest=7
)
OPERATIONS = {(method.lower(), spec.path): spec for spec in api.ROUTES for method in spec.methods}


class _Refuses:
    """A stub service: any call raises ``error`` (the handler got past its inputs)."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise self._error

        return refuse


def stub_services() -> Services:
    refused: Any = _Refuses(NoQuorum("stub: no writes"))
    unknown: Any = _Refuses(NotFound("stub: no rows"))
    return Services(
        SETTINGS, queries=unknown, writes=refused, status=refused, metrics=refused, backups=refused
    )


class InProcess:
    """Requests to an ASGI app in process, one event loop per request."""

    def __init__(self, app: Starlette, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = dict(headers or {})

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", headers=self.headers
            ) as http:
                return await http.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)


@pytest.fixture(scope="module")
def client() -> InProcess:
    return InProcess(api.build_app(stub_services()), operator_headers())


@pytest.fixture(scope="module")
def document(client: InProcess) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json", headers={"authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def _at(path: str) -> str:
    return "/api/v1" + re.sub(r"{\w+}", "1", path)


# -- the document ------------------------------------------------------------------------------


def test_it_is_a_valid_openapi_3_1_document(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(document).validate()
    assert document["servers"] == [{"url": "/api/v1"}]


def test_it_needs_no_credentials_and_is_the_one_built_from_the_table(
    client: InProcess, document: dict[str, Any]
) -> None:
    anonymous = client.get("/api/v1/openapi.json", headers={"authorization": "", "x-peer": ""})
    assert anonymous.status_code == 200
    assert document == orjson.loads(openapi.encode(openapi.build(api.ROUTES, SETTINGS)))


def test_every_route_of_the_table_is_there_with_its_methods_and_nothing_else(
    document: dict[str, Any],
) -> None:
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == set(OPERATIONS)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_route_is_described(document: dict[str, Any]) -> None:
    for spec in api.ROUTES:
        assert spec.summary.strip(), spec.path
        assert isinstance(spec.reply, Reply), spec.path
        for method in spec.methods:
            operation = document["paths"][spec.path][method.lower()]
            assert operation["summary"] == spec.summary
            assert str(spec.reply.status) in operation["responses"]


@pytest.mark.parametrize(
    ("access", "security"),
    [
        (Access.PUBLIC, []),
        (Access.CLIENT, [openapi.CLIENT_SECURITY, openapi.OPERATOR_SECURITY]),
        (Access.OPERATOR, [openapi.OPERATOR_SECURITY]),
    ],
)
def test_security_follows_each_routes_access(
    document: dict[str, Any], access: Access, security: list[dict[str, list[str]]]
) -> None:
    routes = [(m, spec) for (m, _), spec in OPERATIONS.items() if spec.access is access]
    assert routes
    for method, spec in routes:
        operation = document["paths"][spec.path][method]
        assert operation["security"] == security, (method, spec.path)
        statuses = set(operation["responses"])
        assert ("401" in statuses) is (access is not Access.PUBLIC)
        assert ("403" in statuses) is (access is not Access.PUBLIC)
        assert ("x-scope" in operation) is (access is Access.CLIENT)


def test_both_security_schemes_are_declared(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == schemes["apiKey"] | {"type": "apiKey", "in": "header"}
    assert (schemes["apiKey"]["name"], schemes["apiSecret"]["name"]) == (
        "x-api-key",
        "x-secret-key",
    )
    assert schemes["operatorBasic"]["type"] == "http"
    assert schemes["operatorBasic"]["scheme"] == "basic"
    assert schemes["operatorPeer"] == schemes["operatorPeer"] | {"in": "header", "name": "x-peer"}


def test_parameters_are_the_ones_each_route_declares(document: dict[str, Any]) -> None:
    for (method, path), spec in OPERATIONS.items():
        parameters = document["paths"][path][method]["parameters"]
        assert [p["name"] for p in parameters if p["in"] == "path"] == list(spec.path_params)
        assert [p["name"] for p in parameters if p["in"] == "query"] == [
            param.name for param in spec.query
        ]
    executions = document["paths"]["/executions"]["get"]["parameters"]
    names = {p["name"]: p for p in executions}
    assert set(names) >= {"job_id", "project_id", "state", "since", "until", "limit", "offset"}
    assert "jobId" in names["job_id"]["description"]
    assert names["state"]["schema"]["enum"][0] == "pending"
    jobs = {p["name"]: p for p in document["paths"]["/jobs"]["get"]["parameters"]}
    assert jobs["limit"]["schema"]["maximum"] == 10_000
    assert names["limit"]["schema"]["maximum"] == 1000


def test_bodies_come_from_the_input_models(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    job_in = schemas["JobIn"]
    assert set(job_in["properties"]) == set(JobIn.model_fields)
    assert job_in["additionalProperties"] is False
    assert "projectId" in job_in["properties"]["project_id"]["description"]
    assert set(schemas["ProjectIn"]["properties"]) == set(ProjectIn.model_fields)
    create = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    one, many = create["schema"]["oneOf"]
    assert one == {"$ref": "#/components/schemas/JobIn"}
    assert many["items"] == one
    assert many["maxItems"] == SETTINGS.max_jobs_per_request
    patch = schemas["JobPatch"]
    assert patch["minProperties"] == 1
    assert patch["properties"]["spec"]["type"] == "string"  # leave it out, never null
    credentials = document["paths"]["/credentials"]["post"]["requestBody"]
    assert credentials["required"] is False


def test_answers_are_enveloped_and_errors_documented(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            spec = OPERATIONS[(method, path)]
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    schema = next(iter(response["content"].values()))["schema"]
                    if spec.reply.enveloped:
                        assert schema["properties"]["success"] == {"const": True}
                else:
                    name = openapi.ERRORS[int(status)][0]
                    assert response == {"$ref": f"#/components/responses/{name}"}
    assert set(openapi.ERRORS) == {400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503, 507}


def test_the_error_envelope_schema_holds_the_real_error_answers(
    document: dict[str, Any],
) -> None:
    resolver = {"components": document["components"]}
    schema = {**document["components"]["schemas"]["ErrorEnvelope"], **resolver}
    for answer in (
        failure(ValidationFailed("x", [])),
        failure(ValidationFailed("item 0: spec: bad", [FieldError("spec", "bad", 0)])),
        failure(NotFound("no job with id 5")),
    ):
        jsonschema.validate(_json(answer), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_json(ok({"id": 1})), schema)


def _json(response: Response) -> Any:
    return orjson.loads(bytes(response.body))


# -- the table, the helpers and the document agree -------------------------------------------

INVALID = {"integer": "not-a-number", "string": "not-a-choice", "number|string": "never"}


def _invalid(param: Param) -> str:
    """A value ``param`` refuses: past its length for free text (a name, ``q``)."""
    if param.max_length is not None:
        return "x" * (param.max_length + 1)
    return INVALID[param.type]


def _bad_queries() -> Iterator[tuple[str, str, Param, str]]:
    for (method, path), spec in OPERATIONS.items():
        for param in spec.query:
            for name in param.names():
                yield method, path, param, name


@pytest.mark.parametrize(
    ("method", "path", "param", "name"),
    list(_bad_queries()),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_declared_query_parameter_is_read_and_checked(
    client: InProcess, method: str, path: str, param: Param, name: str
) -> None:
    response = client.request(method.upper(), _at(path), params={name: _invalid(param)})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == name


@pytest.mark.parametrize(
    "spec", [s for s in api.ROUTES if s.body is not None], ids=lambda s: f"{s.methods}{s.path}"
)
def test_every_declared_body_is_read(client: InProcess, spec: RouteSpec) -> None:
    for method in spec.methods:
        response = client.request(
            method,
            _at(spec.path),
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "spec",
    [s for s in api.ROUTES if s.body is None and s.methods != ("GET",)],
    ids=lambda s: f"{s.methods}{s.path}",
)
def test_a_route_without_a_body_ignores_one(client: InProcess, spec: RouteSpec) -> None:
    for method in spec.methods:
        response = client.request(method, _at(spec.path), content=b"{not json")
        assert response.status_code in (404, 503), response.text  # reached the stubs


def test_a_handler_reading_an_undeclared_input_is_a_server_error() -> None:
    async def reads_limit(request: Request) -> Response:
        return ok({"limit": int_param(request, LIMIT)})

    def answer(query: tuple[Param, ...]) -> int:
        spec = RouteSpec(
            "/t", ("GET",), reads_limit, Permission(Access.PUBLIC), "test", Reply(None), query=query
        )
        app = Starlette(routes=[api._route(spec)])
        app.state.services = stub_services()
        return InProcess(app).get("/t?limit=5").status_code

    assert answer((LIMIT,)) == 200
    assert answer((CONSISTENCY,)) == 500
    assert answer(()) == 500


# -- the docs page -----------------------------------------------------------------------------


def test_the_docs_page_is_shipped_and_reaches_nothing_but_this_node(client: InProcess) -> None:
    shipped = files("scheduler0.daemon.api").joinpath("static", "docs.html").read_text()
    response = client.get("/api/v1/docs", headers={"authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == shipped
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    page = response.text
    assert not re.search(r"https?://|(?:src|href)\s*=\s*[\"']?//", page, re.I)
    assert not re.search(r"<script[^>]+src=|<link[^>]+stylesheet|@import|url\(", page, re.I)
    assert 'fetch("openapi.json"' in page


def test_an_empty_query_value_is_documented_and_taken_as_absent(
    client: InProcess, document: dict[str, Any]
) -> None:
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation["parameters"]:
                assert parameter.get("allowEmptyValue", False) is (parameter["in"] == "query")
    empty = {name: "" for name in ("limit", "offset", "consistency", "state", "since", "job_id")}
    response = client.get("/api/v1/executions", params=empty)
    assert response.status_code == 404, response.text  # past the checks, at the stub queries


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/v1/projects/1", "DELETE, GET, HEAD, PATCH, PUT"),
        ("/api/v1/projects", "GET, HEAD, POST"),
        ("/api/v1/credentials/1/archive", "POST"),
        ("/api/v1/cluster/members/2", "DELETE"),
    ],
)
def test_a_405_allows_every_method_of_the_path(client: InProcess, path: str, allow: str) -> None:
    response = client.request("TRACE", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"
