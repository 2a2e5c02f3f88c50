"""The typer CLI: init commands, help, and `create credential` against real sockets."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from scheduler0.cli.main import app
from scheduler0.config import (
    Secrets,
    Settings,
    read_secrets_file,
    render_config_yaml,
    write_secrets_file,
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in an empty directory with no SCHEDULER0_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("SCHEDULER0_"):
            monkeypatch.delenv(name)
    return tmp_path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- help ---------------------------------------------------------------------


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    for command in ("config", "secrets", "credentials", "start", "console"):
        assert command in listed
    # The seed's names still work (below) but are not listed next to the new ones.
    assert "credential" not in listed and "create" not in listed
    assert "Exit codes" in result.stdout


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["config", "init"],
        ["secrets", "init"],
        ["credential", "init"],
        ["start"],
        ["create", "credential"],
    ],
)
def test_every_command_has_an_example(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example: scheduler0" in result.stdout


# --- config init ----------------------------------------------------------------


def test_config_init_writes_commented_defaults(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "init"])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "config.yml").read_text()
    assert written == render_config_yaml()
    assert yaml.safe_load(written)["Port"] == 9091
    assert "config.yml" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yml"]  # no data dir


def test_config_init_refuses_to_overwrite_without_force(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "config.yml"
    target.write_text("Port: 1234\n")
    result = runner.invoke(app, ["config", "init"])
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert target.read_text() == "Port: 1234\n"

    forced = runner.invoke(app, ["config", "init", "--force"])
    assert forced.exit_code == 0
    assert target.read_text() == render_config_yaml()


def test_config_init_custom_path(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "init", "--path", "node2.yml"])
    assert result.exit_code == 0
    assert (tmp_path / "node2.yml").exists() and not (tmp_path / "config.yml").exists()


# --- credential init --------------------------------------------------------------


def test_credential_init_generate_writes_0600(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["credential", "init", "--generate"])
    assert result.exit_code == 0, result.output
    path = tmp_path / ".scheduler0"
    assert mode(path) == 0o600
    saved = read_secrets_file(path)
    assert saved is not None and saved.complete
    assert saved.auth_password is not None and saved.auth_password not in result.output
    assert str(path) in result.stderr


def test_secrets_init_is_the_new_name_of_credential_init(runner: CliRunner, tmp_path: Path) -> None:
    args = ["secrets", "init", "--secret-key", "k", "--username", "ops", "--password", "pw1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_secrets_file(tmp_path / ".scheduler0") == Secrets("k", "ops", "pw1")


def test_credential_init_flags(runner: CliRunner, tmp_path: Path) -> None:
    args = ["credential", "init", "--secret-key", "k", "--username", "ops", "--password", "pw1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_secrets_file(tmp_path / ".scheduler0") == Secrets("k", "ops", "pw1")
    assert "pw1" not in result.output


def test_credential_init_prompts(runner: CliRunner, tmp_path: Path) -> None:
    # secret key, username, password, password confirmation
    result = runner.invoke(app, ["credential", "init"], input="mykey\nops\npw1\npw1\n")
    assert result.exit_code == 0, result.output
    assert read_secrets_file(tmp_path / ".scheduler0") == Secrets("mykey", "ops", "pw1")
    assert "pw1" not in result.output
    assert mode(tmp_path / ".scheduler0") == 0o600


def test_credential_init_empty_secret_key_is_generated(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["credential", "init"], input="\nops\npw1\npw1\n")
    assert result.exit_code == 0, result.output
    saved = read_secrets_file(tmp_path / ".scheduler0")
    assert saved is not None and saved.secret_key is not None and len(saved.secret_key) == 64
    assert "secret key" in result.stderr


def test_credential_init_refuses_to_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / ".scheduler0"
    write_secrets_file(path, Secrets("k", "u", "p"))
    result = runner.invoke(app, ["credential", "init", "--generate"])
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert read_secrets_file(path) == Secrets("k", "u", "p")
    assert runner.invoke(app, ["credential", "init", "--generate", "--force"]).exit_code == 0
    assert read_secrets_file(path) != Secrets("k", "u", "p")


# --- start: only the parts that run before the daemon ------------------------------


def test_start_with_bad_config_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("Port: 0\n")
    result = runner.invoke(app, ["start"])
    assert result.exit_code == 2
    assert "Port:" in result.stderr
    assert not (tmp_path / ".scheduler0").exists()


def test_start_flag_is_validated_with_the_key_name(runner: CliRunner) -> None:
    result = runner.invoke(app, ["start", "--log-level", "loud"])
    assert result.exit_code == 2
    assert "LogLevel:" in result.stderr


def test_start_generates_secrets_and_runs_the_node(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Settings] = []

    def run_node(settings: Settings) -> int:
        started.append(settings)
        return 5

    fake = types.ModuleType("scheduler0.daemon.serve")
    fake.run_node = run_node  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "scheduler0.daemon.serve", fake)
    args = ["start", "--port", "9999", "--node-id", "4", "--no-bootstrap", "--data-dir", "d"]
    result = runner.invoke(app, args)
    assert result.exit_code == 5, result.output
    [settings] = started
    assert (settings.port, settings.node_id, settings.bootstrap) == (9999, 4, False)
    assert settings.data_dir == Path("d")
    saved = read_secrets_file(tmp_path / ".scheduler0")
    assert saved is not None and saved == settings.secrets
    assert "scheduler0 credentials create" in result.stderr

    again = runner.invoke(app, ["start"])
    assert again.exit_code == 5
    assert started[1].secrets == saved
    assert "Generated" not in again.stderr


# --- create credential ---------------------------------------------------------


class FakeNode(BaseHTTPRequestHandler):
    """Answers POST /api/v1/credentials like a node; records what it was sent."""

    requests: ClassVar[list[dict[str, Any]]] = []
    reply: ClassVar[tuple[int, dict[str, Any]]] = (201, {})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        FakeNode.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
        )
        status, envelope = FakeNode.reply
        data = json.dumps(envelope).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_node() -> Iterator[str]:
    FakeNode.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeNode)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def operator_secrets(tmp_path: Path) -> Secrets:
    secrets = Secrets("k" * 64, "ops", "pw1")
    write_secrets_file(tmp_path / ".scheduler0", secrets)
    return secrets


CREDENTIAL = {"id": 7, "api_key": "AK123", "api_secret": "AS456", "archived": False}


def test_create_credential_prints_key_and_secret(
    runner: CliRunner, fake_node: str, operator_secrets: Secrets
) -> None:
    FakeNode.reply = (201, {"success": True, "data": CREDENTIAL})
    result = runner.invoke(app, ["create", "credential", "--node", fake_node])
    assert result.exit_code == 0, result.output
    assert "AK123" in result.stdout and "AS456" in result.stdout
    [sent] = FakeNode.requests
    assert sent["path"] == "/api/v1/credentials"
    assert sent["body"] == {}
    assert sent["headers"]["x-peer"] == "cmd"
    expected = base64.b64encode(b"ops:pw1").decode()
    assert sent["headers"]["Authorization"] == f"Basic {expected}"


def test_create_credential_json(
    runner: CliRunner, fake_node: str, operator_secrets: Secrets
) -> None:
    FakeNode.reply = (201, {"success": True, "data": CREDENTIAL})
    result = runner.invoke(app, ["create", "credential", "--node", fake_node, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == CREDENTIAL


def test_create_credential_defaults_to_config_host_port(
    runner: CliRunner, fake_node: str, operator_secrets: Secrets, tmp_path: Path
) -> None:
    FakeNode.reply = (201, {"success": True, "data": CREDENTIAL})
    (tmp_path / "config.yml").write_text(f"Port: {fake_node.rsplit(':', 1)[1]}\n")
    result = runner.invoke(app, ["create", "credential", "--json"])
    assert result.exit_code == 0, result.output
    assert len(FakeNode.requests) == 1


def test_create_credential_api_error_exits_1(
    runner: CliRunner, fake_node: str, operator_secrets: Secrets
) -> None:
    FakeNode.reply = (
        401,
        {"success": False, "data": None, "error": {"code": "unauthorized", "message": "bad auth"}},
    )
    result = runner.invoke(app, ["create", "credential", "--node", fake_node])
    assert result.exit_code == 1
    assert "bad auth" in result.stderr
    assert result.stdout == ""


def test_create_credential_unreachable_exits_3(
    runner: CliRunner, operator_secrets: Secrets
) -> None:
    # A bound socket that never listens: connections to it are refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = runner.invoke(app, ["create", "credential", "--node", f"127.0.0.1:{port}"])
    assert result.exit_code == 3
    assert "cannot reach" in result.stderr
    assert str(port) in result.stderr


def test_create_credential_without_operator_secrets_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(app, ["create", "credential", "--node", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "secrets init" in result.stderr
