"""TLS for the HTTP API: real nodes serving https with a certificate made at
test time, verified by peers, the CLI and the console against TLSCAFile."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler0.console.http_source import Credentials, HttpSource
from tests.support.nodes import (
    NodeProcess,
    operator_headers,
    running_node,
    scheduler0_command,
)
from tests.support.tls import TlsFiles, make_tls_files

pytestmark = pytest.mark.integration  # one real node (and so "slow")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[NodeProcess]:
    workdir = tmp_path_factory.mktemp("tls-node")
    with running_node(workdir, extra_env=tls.node_env(), ca_file=tls.ca_cert) as node:
        yield node


def cli(node: NodeProcess, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*scheduler0_command(), *args, "--node", node.url],
        cwd=node.workdir,
        env=env or node.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_api_answers_over_https_verified_against_the_ca(node: NodeProcess) -> None:
    assert node.url.startswith("https://127.0.0.1:")
    health = httpx.get(f"{node.api}/healthcheck", verify=node.verify, timeout=5)
    assert health.status_code == 200 and health.json()["data"]["ready"] is True
    cluster = httpx.get(
        f"{node.api}/cluster", headers=operator_headers(), verify=node.verify, timeout=5
    ).json()["data"]
    assert [m["address"] for m in cluster["members"]] == [node.url]


def test_plain_http_and_clients_without_the_ca_get_no_answer(node: NodeProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{node.port}/api/v1/healthcheck", timeout=5)
    # The system store does not know the test CA: the certificate is refused.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{node.api}/healthcheck", verify=ssl.create_default_context(), timeout=5)


def test_the_cli_works_over_https_with_the_ca_from_the_environment(node: NodeProcess) -> None:
    made = cli(node, "create", "credential", "--json")
    assert made.returncode == 0, made.stderr
    credential = json.loads(made.stdout)
    created = cli(node, "projects", "create", "--name", "over-tls", "--json")
    assert created.returncode == 0, created.stderr
    # A client key with --node: no settings read, the CA comes from SCHEDULER0_TLS_CA_FILE.
    env = {
        "SCHEDULER0_TLS_CA_FILE": str(node.ca_file),
        "SCHEDULER0_API_KEY": credential["api_key"],
        "SCHEDULER0_API_SECRET": credential["api_secret"],
        "PATH": node.env()["PATH"],
    }
    listed = cli(node, "projects", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "over-tls" in [p["name"] for p in json.loads(listed.stdout)["projects"]]

    without_ca = {k: v for k, v in env.items() if k != "SCHEDULER0_TLS_CA_FILE"}
    refused = cli(node, "projects", "list", "--json", env=without_ca)
    assert refused.returncode == 3, refused
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_the_console_source_verifies_against_the_ca(node: NodeProcess) -> None:
    user, password = "operator", "test-password"
    source = HttpSource(
        node.url, Credentials(username=user, password=password, ca_file=str(node.ca_file))
    )
    try:
        view = source.cluster()
    finally:
        source.close()
    assert view is not None


def test_a_backup_over_https_needs_the_operator(node: NodeProcess, tmp_path: Path) -> None:
    out = tmp_path / "over-tls.s0backup"
    made = cli(node, "backup", "--out", str(out), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["source_address"] == node.url
    checked = cli_local(node, "restore", str(out), "--check")
    assert checked.returncode == 0, checked.stderr
    credential = json.loads(cli(node, "create", "credential", "--json").stdout)
    # An operator route: a client key is refused.
    response = httpx.get(
        f"{node.api}/backup",
        headers={"x-api-key": credential["api_key"], "x-secret-key": credential["api_secret"]},
        verify=node.verify,
        timeout=10,
    )
    assert response.status_code == 403


def cli_local(node: NodeProcess, *args: str) -> Any:
    return subprocess.run(
        [*scheduler0_command(), *args],
        cwd=node.workdir,
        env=node.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
