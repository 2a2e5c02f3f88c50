"""The Docker packaging, checked without Docker.

``Dockerfile`` and ``docker-compose.yml`` are parsed (PyYAML for the compose
file) and compared with each other and with the settings' defaults. Then the
three compose services run as local ``scheduler0 start`` processes, each with
exactly the environment its container would get: the image's ``ENV`` lines,
overlaid with the service's ``environment`` (YAML merge keys resolved), with
``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}`` substituted from
the variables an operator would export (``OPERATOR_VARIABLES``). Only then is
the environment moved onto 127.0.0.1, mechanically (``localize``):

1. a service's host name (its name or ``hostname``) or ``0.0.0.0``, alone or
   as ``host:port`` (in URLs too), becomes ``127.0.0.1``;
2. the port of each ``(service, container port)`` pair, in ``host:port`` or as
   the service's ``SCHEDULER0_PORT``, becomes one free local port (the same
   pair always the same port; ``0.0.0.0`` stands for the service itself);
3. a value at or under a volume's container path (``/data``) moves to
   ``<test dir>/<service>/<volume name>``.

Nothing else changes: names, ids, secrets and every other setting are the
compose file's.

Tiers: the checks of the two files are ``contract`` (the packaging surface, no
node); running the compose services is ``cluster`` (and so ``slow``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scheduler0.config import Settings, load_settings
from tests.support.nodes import (
    Client,
    NodeProcess,
    create_credential,
    free_port,
    wait_until,
)
from tests.support.receiver import run_receiver

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
HEALTHCHECK_PATH = "/api/v1/healthcheck"

OPERATOR_VARIABLES = {
    "SCHEDULER0_SECRET_KEY": "5e" * 32,
    "SCHEDULER0_AUTH_PASSWORD": "compose-test-password",
}
"""What an operator exports before ``docker compose up`` (the README's Docker
section); ``SCHEDULER0_AUTH_USERNAME`` is left to the compose file's default."""


# -- reading the files -----------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, rest = text.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile(keyword: str) -> list[str]:
    return [rest for name, rest in dockerfile_instructions() if name == keyword]


def image_environment() -> dict[str, str]:
    """The image's ``ENV KEY=value`` pairs."""
    env: dict[str, str] = {}
    for rest in dockerfile("ENV"):
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def healthcheck_command() -> str:
    """The shell command of the image's ``HEALTHCHECK ... CMD <command>``."""
    [rest] = dockerfile("HEALTHCHECK")
    _, separator, command = rest.partition(" CMD ")
    assert separator, rest
    return command.strip()


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME-default}``, ``${NAME:-default}``,
    ``${NAME?message}`` and ``${NAME:?message}``."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match[1], match[2] or "", match[3] or ""
        value = variables.get(name)
        missing = value is None or (operator.startswith(":") and value == "")
        if not missing:
            return value or ""
        if operator.endswith("?"):
            raise KeyError(f"{name}: {argument}")
        return argument if operator.endswith("-") else ""

    return _VARIABLE.sub(substitute, value)


def container_environment(service: str, variables: dict[str, str]) -> dict[str, str]:
    """The environment of ``service``'s container: image ENV, then compose's."""
    declared = compose()["services"][service].get("environment", {})
    env = image_environment()
    env.update({key: interpolate(str(value), variables) for key, value in declared.items()})
    return env


@dataclass
class LocalLayout:
    """Where the compose services land on this machine (see the module docstring)."""

    root: Path
    ports: dict[tuple[str, int], int] = field(default_factory=dict)

    def port(self, service: str, container_port: int) -> int:
        key = (service, container_port)
        if key not in self.ports:
            self.ports[key] = free_port()
        return self.ports[key]


def localize(service: str, env: dict[str, str], layout: LocalLayout) -> dict[str, str]:
    """``env`` of ``service`` moved onto 127.0.0.1 by the three rules above."""
    services = compose()["services"]
    owners = {name: name for name in services}
    owners |= {spec["hostname"]: name for name, spec in services.items() if "hostname" in spec}
    hosts = "|".join(re.escape(host) for host in sorted(owners, key=len, reverse=True))
    pattern = re.compile(rf"\b({hosts}|0\.0\.0\.0)(?::(\d+))?\b")

    def to_local(match: re.Match[str]) -> str:
        owner = owners.get(match[1], service)
        port = f":{layout.port(owner, int(match[2]))}" if match[2] else ""
        return "127.0.0.1" + port

    volumes = [
        volume.split(":")[:2] for volume in services[service].get("volumes", []) if ":" in volume
    ]
    local: dict[str, str] = {}
    for key, value in env.items():
        value = pattern.sub(to_local, value)
        if key == "SCHEDULER0_PORT":
            value = str(layout.port(service, int(value)))
        for source, target in volumes:
            if value == target or value.startswith(target + "/"):
                value = str(layout.root / service / source) + value[len(target) :]
        local[key] = value
    return local


# -- the files agree with each other and with the defaults --------------------------


@pytest.mark.contract
def test_image_is_python_311_slim_non_root_with_a_data_volume() -> None:
    assert dockerfile("FROM") == ["python:3.11-slim"]
    [user] = dockerfile("USER")
    assert user.split(":")[0] not in ("0", "root")
    [volume] = dockerfile("VOLUME")
    data_dir = image_environment()["SCHEDULER0_DATA_DIR"]
    assert json.loads(volume) == [data_dir]
    for spec in compose()["services"].values():
        assert [v.split(":")[1] for v in spec["volumes"]] == [data_dir]
    [entrypoint] = dockerfile("ENTRYPOINT")
    assert json.loads(entrypoint) == ["scheduler0", "start"]


@pytest.mark.contract
def test_exposed_ports_and_healthcheck_match_compose_and_defaults() -> None:
    defaults = Settings()
    api_port, raft_port = defaults.port, defaults.raft_host_port[1]
    exposed = {int(port) for rest in dockerfile("EXPOSE") for port in rest.split()}
    assert exposed == {api_port, raft_port}
    assert image_environment()["SCHEDULER0_PORT"] == str(api_port)

    command = healthcheck_command()
    assert re.findall(r"/api/v\d+/\w+", command) == [HEALTHCHECK_PATH]
    spec = compose()
    for name, service in spec["services"].items():
        assert service["healthcheck"]["test"] == ["CMD-SHELL", command], name
        env = service["environment"]
        assert env["SCHEDULER0_PORT"] == str(api_port)
        assert env["SCHEDULER0_RAFT_ADDRESS"] == f"{service['hostname']}:{raft_port}"
        published = [int(mapping.rsplit(":", 1)[1]) for mapping in service["ports"]]
        assert published == [api_port], name
        replicas = json.loads(env["SCHEDULER0_REPLICAS"])
        assert {r["Address"].rsplit(":", 1)[1] for r in replicas} == {str(api_port)}
        assert {r["RaftAddress"].rsplit(":", 1)[1] for r in replicas} == {str(raft_port)}


@pytest.mark.contract
def test_every_compose_variable_is_a_setting_and_each_node_is_in_replicas(
    tmp_path: Path,
) -> None:
    services = compose()["services"]
    assert len(services) == 3
    ids = set()
    for name in services:
        env = container_environment(name, OPERATOR_VARIABLES)
        settings = load_settings(env=env, cwd=tmp_path, secrets_path=tmp_path / "none")
        assert settings.secrets.complete
        assert settings.secret_key == OPERATOR_VARIABLES["SCHEDULER0_SECRET_KEY"]
        members = {(r.node_id, r.address, r.raft_address) for r in settings.replicas}
        assert (settings.node_id, settings.http_base_url, settings.raft_address) in members
        ids.add(settings.node_id)
        # No typo: every SCHEDULER0_* variable names a setting.
        names = {f"SCHEDULER0_{field.upper()}" for field in Settings.model_fields}
        assert {key for key in env if key.startswith("SCHEDULER0_")} <= names
    assert ids == {1, 2, 3}
    with pytest.raises(KeyError, match="SCHEDULER0_SECRET_KEY"):
        container_environment("node1", {})


@pytest.mark.contract
def test_localize_rewrites_only_hosts_ports_and_the_data_path(tmp_path: Path) -> None:
    layout = LocalLayout(tmp_path)
    original = container_environment("node2", OPERATOR_VARIABLES)
    local = localize("node2", original, layout)
    names = ("node1", "node2", "node3")
    api = {name: layout.port(name, 9091) for name in names}
    raft = {name: layout.port(name, 7071) for name in names}
    assert local["SCHEDULER0_HOST"] == "127.0.0.1"
    assert local["SCHEDULER0_PORT"] == str(api["node2"])
    assert local["SCHEDULER0_RAFT_ADDRESS"] == f"127.0.0.1:{raft['node2']}"
    assert local["SCHEDULER0_DATA_DIR"] == str(tmp_path / "node2" / "node2-data")
    assert json.loads(local["SCHEDULER0_REPLICAS"]) == [
        {
            "Address": f"http://127.0.0.1:{api[name]}",
            "RaftAddress": f"127.0.0.1:{raft[name]}",
            "NodeId": node_id,
        }
        for node_id, name in enumerate(names, start=1)
    ]
    moved = {"SCHEDULER0_HOST", "SCHEDULER0_PORT", "SCHEDULER0_RAFT_ADDRESS"}
    moved |= {"SCHEDULER0_DATA_DIR", "SCHEDULER0_REPLICAS"}
    assert {k: v for k, v in local.items() if k not in moved} == {
        k: v for k, v in original.items() if k not in moved
    }
    assert len(set(layout.ports.values())) == 6


# -- the compose cluster, as local processes ------------------------------------------


@dataclass
class ComposeNode(NodeProcess):
    """A node run with exactly ``environment`` (plus the test's non-SCHEDULER0_ vars)."""

    environment: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER0_")}
        env.update(self.environment)
        return env


def compose_nodes(root: Path) -> list[ComposeNode]:
    layout = LocalLayout(root)
    nodes = []
    for name in compose()["services"]:
        env = localize(name, container_environment(name, OPERATOR_VARIABLES), layout)
        nodes.append(
            ComposeNode(
                root / name,
                node_id=int(env["SCHEDULER0_NODE_ID"]),
                port=int(env["SCHEDULER0_PORT"]),
                raft_port=int(env["SCHEDULER0_RAFT_ADDRESS"].rsplit(":", 1)[1]),
                environment=env,
            )
        )
    return nodes


def operator_auth(env: dict[str, str]) -> dict[str, Any]:
    return {
        "auth": (env["SCHEDULER0_AUTH_USERNAME"], env["SCHEDULER0_AUTH_PASSWORD"]),
        "headers": {"x-peer": "cmd"},
    }


def run_healthcheck(node: ComposeNode) -> int:
    """The image's HEALTHCHECK command, as docker runs it, in the node's environment
    (with this interpreter's directory first on PATH, as ``python`` is in the image)."""
    env = node.env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["/bin/sh", "-c", healthcheck_command()], env=env, capture_output=True, timeout=30
    )
    return done.returncode


@pytest.fixture
def compose_cluster(tmp_path: Path) -> Iterator[list[ComposeNode]]:
    nodes = compose_nodes(tmp_path)
    try:
        for node in nodes:
            node.start(wait=False)
        for node in nodes:
            node.wait_ready(60)
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.mark.slow
@pytest.mark.cluster
def test_the_compose_services_form_a_cluster_and_fire_a_job(
    tmp_path: Path, compose_cluster: list[ComposeNode]
) -> None:
    nodes = compose_cluster
    env = nodes[0].environment
    assert all(run_healthcheck(node) == 0 for node in nodes)

    def formed() -> dict[str, Any] | None:
        for node in nodes:
            answer = httpx.get(f"{node.api}/cluster", timeout=5, **operator_auth(env))
            answer.raise_for_status()
            status: dict[str, Any] = answer.json()["data"]
            members = status["members"]
            leaders = [m["node_id"] for m in members if m["role"] == "leader"]
            if not (
                status["has_quorum"]
                and len(leaders) == 1
                and sorted(m["node_id"] for m in members) == [1, 2, 3]
                and all(m["reachable"] for m in members)
            ):
                return None
        return status

    status = wait_until(formed, timeout=60, interval=0.5, what="a cluster of the 3 services")
    leader = next(node for node in nodes if node.node_id == status["leader_node_id"])

    with run_receiver(tmp_path) as receiver:
        client = Client(leader.api, create_credential(leader))
        project = client.data("POST", "/projects", 201, json={"name": "compose"})
        job = {"spec": "@every 1s", "project_id": project["id"]}
        [created] = client.data(
            "POST", "/jobs", 201, json=[job | {"callback_url": f"{receiver.url}/cb"}]
        )
        client.close()
        wait_until(
            lambda: [r for r in receiver.records() if r["status"] == 200],
            timeout=60,
            interval=0.2,
            what="a callback from the compose cluster",
        )
        delivered = [r for r in receiver.records() if r["status"] == 200]

    assert {r["id"] for r in delivered} == {created["id"]}
    # With three nodes the leader fires nothing: a worker sent it.
    assert {r["node"] for r in delivered} <= {str(n.node_id) for n in nodes if n is not leader}

    codes = [node.terminate() for node in nodes]
    assert codes == [0, 0, 0]
    assert run_healthcheck(nodes[0]) != 0
