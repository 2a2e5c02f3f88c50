"""``scheduler0 console``'s options, credential precedence and layering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from scheduler0.console.command import console, resolve_connection
from scheduler0.console.http_source import Credentials
from scheduler0.errors import ConfigError

OPERATOR_ENV = {"SCHEDULER0_AUTH_USERNAME": "op", "SCHEDULER0_AUTH_PASSWORD": "pw"}


def test_flags_beat_env_which_beats_operator_auth(tmp_path: Path) -> None:
    env = {**OPERATOR_ENV, "SCHEDULER0_API_KEY": "k-env", "SCHEDULER0_API_SECRET": "s-env"}
    url, creds = resolve_connection("http://n:1", None, "k", "s", env)
    assert (url, creds) == ("http://n:1", Credentials(api_key="k", api_secret="s"))
    _, creds = resolve_connection("http://n:1", None, None, None, env)
    assert creds == Credentials(api_key="k-env", api_secret="s-env")


def test_operator_auth_and_node_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {**OPERATOR_ENV, "SCHEDULER0_PORT": "9123"}
    url, creds = resolve_connection(None, None, None, None, env)
    assert url == "http://127.0.0.1:9123"
    assert creds == Credentials(username="op", password="pw")


def test_missing_credentials_name_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="--api-key"):
        resolve_connection(None, None, None, None, {})
    with pytest.raises(ConfigError, match="both"):
        resolve_connection("http://n:1", None, "k", None, {})


def test_it_is_a_typer_command_with_the_documented_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = typer.Typer()
    app.command("console")(console)
    app.command("other")(lambda: None)  # so "console" stays a sub-command
    runner = CliRunner()
    help_text = runner.invoke(app, ["console", "--help"]).output
    for option in ("--node", "--config", "--api-key", "--api-secret"):
        assert option in help_text
    monkeypatch.chdir(tmp_path)
    for name in ("SCHEDULER0_API_KEY", "SCHEDULER0_API_SECRET", *OPERATOR_ENV):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["console", "--node", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "no credentials" in result.output


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(out.stdout.split())


def test_the_console_never_loads_the_daemon() -> None:
    modules = _loaded_after("import scheduler0.console.app, scheduler0.console.command")
    assert "textual" in modules  # the import did load the console
    assert not any(m.startswith("scheduler0.daemon") for m in modules)


def test_the_command_loads_textual_only_when_it_runs() -> None:
    modules = _loaded_after("import scheduler0.console.command")
    assert not any(m == "textual" or m.startswith("textual.") for m in modules)
