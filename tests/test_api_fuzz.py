"""Schemathesis against a real node: every operation of the node's own
``/api/v1/openapi.json``, with generated valid and invalid inputs, must answer
without a server error, with a documented status, content type and body.

One ``scheduler0 start`` process on 127.0.0.1. Client routes are called with a
client credential, operator routes with HTTP Basic + ``x-peer``. Left out:
``POST /cluster/members`` and ``DELETE /cluster/members/{id}``, which would
add a member that never answers (the node loses its quorum) or remove the node
itself. The test's own credential is kept out of reach of the operations that
archive or delete credentials (their id is swapped for a decoy's).

Bounded: ``SCHEDULER0_FUZZ_EXAMPLES`` (default 12) examples per operation in the
fuzzing phase, plus the explicit examples and the coverage phase, on a fixed
seed (``SCHEDULER0_FUZZ_SEED`` to change it). The number of cases is printed.

Callbacks of the jobs it creates cannot leave the machine: the node runs with
every HTTP proxy set to a closed port on 127.0.0.1 (only 127.0.0.1 and
localhost go direct), so a generated callback URL never reaches another host.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.support.nodes import (
    NodeProcess,
    create_credential,
    free_port,
    operator_headers,
    running_node,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = int(os.environ.get("SCHEDULER0_FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("SCHEDULER0_FUZZ_SEED", "20240601"))
EXCLUDED = (("POST", "/cluster/members"), ("DELETE", "/cluster/members/{id}"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]


@dataclass
class Callers:
    client: dict[str, str]
    client_credential_id: int
    decoy_credential_id: int
    operator: dict[str, str] = field(default_factory=operator_headers)


@dataclass
class Tally:
    cases: int = 0
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    operations: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    black_hole = f"http://127.0.0.1:{free_port()}"
    env: dict[str, str] = {}
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = black_hole
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    # A small batch limit: the document's maxItems, and the cheap 413 past it.
    env["SCHEDULER0_MAX_JOBS_PER_REQUEST"] = "50"
    with running_node(tmp_path_factory.mktemp("fuzz"), extra_env=env) as node:
        yield node


@pytest.fixture(scope="module")
def callers(node: NodeProcess) -> Callers:
    """Two credentials (the test's and a decoy), and rows for the generated
    ids to find: a project with jobs, one of them run now (its callback goes to
    a closed port on 127.0.0.1 and fails)."""
    client = create_credential(node)
    decoy = create_credential(node)
    with httpx.Client(base_url=node.api, timeout=10) as http:
        listed = http.get("/credentials", headers=operator_headers()).json()["data"]
        ids = {row["api_key"]: row["id"] for row in listed["credentials"]}
        project = http.post("/projects", headers=client, json={"name": "seed"}).json()["data"]
        callback = f"http://127.0.0.1:{free_port()}/cb"
        jobs = [
            {"project_id": project["id"], "spec": spec, "callback_url": callback, "data": data}
            for spec, data in (("0 0 1 1 *", None), ("@every 1h", {"n": 1}), ("0 9 * * 1-5", [1]))
        ]
        created = http.post("/jobs", headers=client, json=jobs)
        assert created.status_code == 201, created.text
        first = created.json()["data"][0]["id"]
        assert http.post(f"/jobs/{first}/run", headers=client).status_code == 202
    return Callers(client, ids[client["x-api-key"]], ids[decoy["x-api-key"]])


@pytest.fixture(scope="module")
def api_schema(node: NodeProcess) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "base-url": node.api,
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "mode": "all",
                # The test sends the credentials itself (real ones, by route).
                "with-security-parameters": False,
                # The same cases on every machine: no replay of earlier failures.
                "database": "none",
            },
            "cache": {"enabled": False},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "request-timeout": 10,
            # Invalid input is refused with one of the documented 4xx (413: over
            # a limit), never accepted.
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [400, 401, 403, 404, 405, 409, 413, 422]
                }
            },
        }
    )
    return schemathesis.openapi.from_url(f"{node.api}/openapi.json", config=config)


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counted = Tally()
    yield counted
    seconds = time.monotonic() - counted.started
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(counted.by_status.items()))
    line = (
        f"schemathesis: {counted.cases} cases over {len(counted.operations)} operations"
        f" in {seconds:.1f}s (statuses {statuses})"
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


def _excluded(ctx: Any) -> bool:
    return (ctx.operation.method.upper(), ctx.operation.path) in EXCLUDED


schema = schemathesis.pytest.from_fixture("api_schema").exclude(_excluded)


def _headers_for(case: schemathesis.Case, callers: Callers) -> dict[str, str]:
    """The caller the operation documents: a client if it takes client keys,
    else an operator; none for a public route."""
    security = case.operation.definition.raw.get("security", [])
    schemes = {name for requirement in security for name in requirement}
    if "apiKey" in schemes:
        return dict(callers.client)
    if "operatorBasic" in schemes:
        return dict(callers.operator)
    return {}


def _protect_own_credential(case: schemathesis.Case, callers: Callers) -> None:
    """Archiving or deleting the test's own credential would turn every later
    client call into a 401: aim those at the decoy instead."""
    if not case.operation.path.startswith("/credentials/{id}") or case.method.upper() == "GET":
        return
    params = case.path_parameters or {}
    if str(params.get("id")) == str(callers.client_credential_id):
        params["id"] = callers.decoy_credential_id


@schema.parametrize()
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, callers: Callers, tally: Tally
) -> None:
    _protect_own_credential(case, callers)
    headers = _headers_for(case, callers)
    response = case.call(headers=headers)
    tally.cases += 1
    tally.by_status[response.status_code] += 1
    tally.operations.add(case.operation.label)
    case.validate_response(response, checks=CHECKS, headers=headers)
