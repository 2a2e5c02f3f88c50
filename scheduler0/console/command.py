"""``scheduler0 console``: its options and how they become a connection.

Credentials, highest first: ``--api-key``/``--api-secret``, then
``SCHEDULER0_API_KEY``/``SCHEDULER0_API_SECRET``, then the operator's
username/password from the settings (``config.yml``, ``SCHEDULER0_AUTH_*``,
``.scheduler0``). The node is ``--node``, else the config's ``http://Host:Port``;
an https node is verified against ``TLSCAFile`` (``SCHEDULER0_TLS_CA_FILE``), else
the system store. Textual is imported only when the console really starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from scheduler0.config import load_settings
from scheduler0.console.http_source import Credentials
from scheduler0.errors import ConfigError
from scheduler0.tls import CA_FILE_ENV

EXIT_CONFIG = 2


def resolve_connection(
    node: str | None,
    config: Path | None,
    api_key: str | None,
    api_secret: str | None,
    env: Mapping[str, str] | None = None,
) -> tuple[str, Credentials]:
    """The node URL and credentials to use; ``ConfigError`` says what is missing."""
    env = os.environ if env is None else env
    api_key = api_key or env.get("SCHEDULER0_API_KEY") or None
    api_secret = api_secret or env.get("SCHEDULER0_API_SECRET") or None
    if bool(api_key) != bool(api_secret):
        raise ConfigError("give both --api-key and --api-secret (or neither)")
    if api_key and api_secret and node:
        ca_file = env.get(CA_FILE_ENV) or None
        return node, Credentials(api_key=api_key, api_secret=api_secret, ca_file=ca_file)
    settings = load_settings(config, env=env)
    url = node or settings.http_base_url
    ca = str(settings.tls_ca_file) if settings.tls_ca_file else None
    if api_key and api_secret:
        return url, Credentials(api_key=api_key, api_secret=api_secret, ca_file=ca)
    if settings.auth_username and settings.auth_password:
        return url, Credentials(
            username=settings.auth_username, password=settings.auth_password, ca_file=ca
        )
    raise ConfigError(
        "no credentials: pass --api-key and --api-secret (or SCHEDULER0_API_KEY and "
        "SCHEDULER0_API_SECRET), or run where .scheduler0 holds the operator password"
    )


def console(
    node: Annotated[
        str | None,
        typer.Option(
            "--node",
            metavar="URL",
            envvar="SCHEDULER0_NODE",
            show_envvar=True,
            help="Any node's base URL (default: the config's).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", dir_okay=False, help="config.yml to read."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Client api key (env SCHEDULER0_API_KEY).")
    ] = None,
    api_secret: Annotated[
        str | None,
        typer.Option("--api-secret", help="Client api secret (env SCHEDULER0_API_SECRET)."),
    ] = None,
) -> None:
    """Watch and run the cluster in a terminal UI: nodes, jobs, executions.

    Without a key pair it signs in as the operator (.scheduler0 or SCHEDULER0_AUTH_*).
    Press ? inside for every key.

    Example: scheduler0 console --node http://127.0.0.1:9091
    """
    try:
        url, credentials = resolve_connection(node, config, api_key, api_secret)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    from scheduler0.console.app import create_console  # textual: only when it runs
    from scheduler0.console.http_source import HttpSource

    source = HttpSource(url, credentials)
    try:
        create_console(source).run()
    finally:
        source.close()
