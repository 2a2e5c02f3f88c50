"""``scheduler0 start`` and the seed's ``scheduler0 create credential`` (the same
as ``scheduler0 credentials create`` with no options; kept for scripts)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from scheduler0.cli.output import EXIT_CONFIG, EXIT_UNREACHABLE, fail, say, stdout
from scheduler0.client import unreachable
from scheduler0.config import Settings, ensure_secrets, load_settings, secrets_file_path
from scheduler0.errors import ConfigError
from scheduler0.tls import client_context

create_app = typer.Typer(
    help="The seed's `create credential`: same as `scheduler0 credentials create`.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="config.yml to read (default: ./config.yml).", dir_okay=False),
]

# Operator requests only create a row; a node that takes longer is not healthy.
REQUEST_TIMEOUT_SECONDS = 10.0


def _load(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        fail(exc.message, EXIT_CONFIG)


def start(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Host the HTTP API binds to.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the HTTP API.")] = None,
    node_id: Annotated[int | None, typer.Option(help="Id of this node in the cluster.")] = None,
    raft_address: Annotated[str | None, typer.Option(help="host:port for Raft traffic.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Directory for the database and Raft files.")
    ] = None,
    bootstrap: Annotated[
        bool | None,
        typer.Option("--bootstrap/--no-bootstrap", help="Start the cluster from this node."),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="ERROR, WARN, INFO or DEBUG.")] = None,
) -> None:
    """Run a node until SIGINT or SIGTERM.

    Flags override SCHEDULER0_* environment variables, which override config.yml.
    Missing secrets are generated once and saved in ./.scheduler0.

    Example: scheduler0 start --node-id 2 --port 9092 --raft-address 127.0.0.1:7072 --no-bootstrap
    """
    overrides = {
        "host": host,
        "port": port,
        "node_id": node_id,
        "raft_address": raft_address,
        "data_dir": data_dir,
        "bootstrap": bootstrap,
        "log_level": log_level,
    }
    settings = _load(config, overrides)
    try:
        settings, generated = ensure_secrets(settings, Path.cwd())
    except (OSError, ConfigError) as exc:
        fail(f"cannot prepare secrets: {exc}", EXIT_CONFIG)
    if generated:
        say(
            f"Generated missing secrets and saved them in {escape(str(secrets_file_path()))}. "
            "Get a client api key with: [bold]scheduler0 credentials create[/]"
        )
        if len(settings.replicas) > 1:
            say(
                "[yellow]warning:[/] every node of a cluster needs the same secrets; "
                "copy that file to the others."
            )
    from scheduler0.daemon.serve import run_node  # heavy: only when a node really starts

    raise typer.Exit(run_node(settings))


def _node_url(node: str | None, settings: Settings) -> str:
    url = (node or settings.http_base_url).strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def _error_message(response: httpx.Response) -> str:
    """The node's refusal, naming the node (its URL) it came from."""
    where = f"HTTP {response.status_code} from {response.request.url.copy_with(path='/')}"
    try:
        envelope = response.json()
    except ValueError:
        return f"{where}: {response.text[:200]}"
    error = envelope.get("error") if isinstance(envelope, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return f"{where}: {error['message']}"
    data = envelope.get("data") if isinstance(envelope, dict) else None
    return f"{where}: {data or response.text[:200]}"


def _post_credential(url: str, settings: Settings) -> dict[str, Any]:
    if not (settings.auth_username and settings.auth_password):
        fail(
            "no operator username/password; run `scheduler0 secrets init` "
            "or set SCHEDULER0_AUTH_USERNAME and SCHEDULER0_AUTH_PASSWORD",
            EXIT_CONFIG,
        )
    try:
        response = httpx.post(
            f"{url}/api/v1/credentials",
            json={},
            auth=(settings.auth_username, settings.auth_password),
            headers={"x-peer": "cmd"},
            timeout=REQUEST_TIMEOUT_SECONDS,
            verify=client_context(settings.tls_ca_file),
        )
    except httpx.HTTPError as exc:
        fail(unreachable(url, exc).message, EXIT_UNREACHABLE)
    envelope: Any = None
    with contextlib.suppress(ValueError):
        envelope = response.json()
    ok = response.is_success and isinstance(envelope, dict) and envelope.get("success")
    if not ok or not isinstance(envelope.get("data"), dict):
        fail(_error_message(response))
    data: dict[str, Any] = envelope["data"]
    return data


def _show_credential(data: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for label, key in (("id", "id"), ("api key", "api_key"), ("api secret", "api_secret")):
        table.add_row(label, escape(str(data.get(key, ""))))
    stdout().print(Panel(table, title="New client credential", expand=False))
    say("Store the api secret now: it cannot be shown again.")


@create_app.command("credential")
def create_credential(
    node: Annotated[
        str | None,
        typer.Option(
            envvar="SCHEDULER0_NODE",
            help="Base URL of a node (default: this config's http://Host:Port).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw data as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Create a client api key and secret (the seed's name of `credentials create`).

    Authenticates with the operator username/password from .scheduler0 or env.
    `scheduler0 credentials create` does the same and takes scopes, projects
    and an expiry.

    Example: scheduler0 create credential --node http://127.0.0.1:9091 --json
    """
    settings = _load(config)
    data = _post_credential(_node_url(node, settings), settings)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _show_credential(data)
