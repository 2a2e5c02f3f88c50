"""``scheduler0 config init`` and ``scheduler0 secrets init`` (the seed's
``credential init``): local files only, no node needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from scheduler0.cli.output import fail, say
from scheduler0.config import (
    CONFIG_FILE_NAME,
    Secrets,
    generate_secrets,
    render_config_yaml,
    secrets_file_path,
    write_secrets_file,
)

config_app = typer.Typer(help="Create the node's config.yml.", no_args_is_help=True)
SECRETS_HELP = (
    "This machine's operator secrets file, .scheduler0: the SecretKey api keys are"
    " derived from, and the operator username/password that operator commands and"
    " peers sign in with. Local only. Not client api keys: see `scheduler0 credentials`."
)
secrets_app = typer.Typer(help=SECRETS_HELP, no_args_is_help=True)
credential_app = typer.Typer(
    help="The seed's name for `scheduler0 secrets` (init writes .scheduler0).",
    no_args_is_help=True,
)


@config_app.command("init")
def config_init(
    path: Annotated[Path, typer.Option("--path", help="File to write.", dir_okay=False)] = Path(
        CONFIG_FILE_NAME
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented config.yml with every key at its default.

    Example: scheduler0 config init --path /etc/scheduler0/config.yml
    """
    if path.exists() and not force:
        fail(f"{path} already exists; pass --force to overwrite it")
    try:
        path.write_text(render_config_yaml(), encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc}")
    say(f"Wrote {escape(str(path))}. Edit it, then run [bold]scheduler0 secrets init[/].")


def _prompt_secrets(given: Secrets) -> Secrets:
    """Ask for whatever was not given on the command line, like the original."""
    secret_key = given.secret_key or typer.prompt(
        "Secret key (leave empty to generate one)",
        default="",
        show_default=False,
        hide_input=True,
    )
    username = given.auth_username or typer.prompt("Username")
    password = given.auth_password or typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    return Secrets(secret_key or None, username, password)


@secrets_app.command("init")
@credential_app.command("init")
def credential_init(
    secret_key: Annotated[
        str | None, typer.Option("--secret-key", help="Key api keys are derived from.")
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", help="HTTP Basic username for peers/operators.")
    ] = None,
    password: Annotated[
        str | None, typer.Option("--password", help="HTTP Basic password for peers/operators.")
    ] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate random values for anything not given.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write .scheduler0 (mode 0600): the secret key and the operator username/password.

    Every node of a cluster needs the same three values. This is not a client
    api key (that is `scheduler0 credentials create`). `scheduler0 credential
    init` is the same command under the seed's name.

    Example: scheduler0 secrets init --generate
    """
    path = secrets_file_path()
    if path.exists() and not force:
        fail(f"{path} already exists; pass --force to overwrite it")
    given = Secrets(secret_key or None, username or None, password or None)
    chosen = given if generate else _prompt_secrets(given)
    generated = [label for label, value in _labelled(chosen) if not value]
    complete = chosen.merged_over(generate_secrets())
    try:
        write_secrets_file(path, complete)
    except OSError as exc:
        fail(f"cannot write {path}: {exc}")
    user = escape(complete.auth_username or "")
    say(f"Wrote {escape(str(path))} (mode 0600) for user [bold]{user}[/].")
    if generated:
        say(f"Generated {', '.join(generated)}; read them from that file.")
    say("Every node of a cluster needs the same three values: copy the file to each node.")


def _labelled(values: Secrets) -> list[tuple[str, str | None]]:
    return [
        ("secret key", values.secret_key),
        ("username", values.auth_username),
        ("password", values.auth_password),
    ]
