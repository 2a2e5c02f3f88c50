"""``scheduler0 credentials create|list|archive``: client api keys (operator auth)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from scheduler0.cli.context import (
    EPILOG,
    AllOption,
    ConfigOption,
    JsonOption,
    LimitOption,
    NodeOption,
    OffsetOption,
    YesOption,
    call,
    cell,
    confirm,
    connect_operator,
    list_page,
    print_json,
    print_page,
    print_record,
)
from scheduler0.cli.output import say, stdout
from scheduler0.models import CredentialScope

credentials_app = typer.Typer(
    help=(
        "Client api keys (key + secret) that apps use against a node: create, list,\n"
        "archive. Operator commands: they authenticate with the username and\n"
        "password of .scheduler0 (or SCHEDULER0_AUTH_USERNAME/SCHEDULER0_AUTH_PASSWORD),\n"
        "which `scheduler0 secrets init` writes.\n\n"
        "Example:\n\n\b\n  scheduler0 credentials create --description ci --json\n"
        "  scheduler0 credentials create --scope read --project 3 --project 4"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
)

COLUMNS = (
    ("id", "id"),
    ("api key", "api_key"),
    ("description", "description"),
    ("archived", "archived"),
    ("scopes", "scopes"),
    ("projects", "projects"),
    ("expires", "expires_at"),
    ("created", "created_at"),
    ("updated", "updated_at"),
)
RECORD_KEYS = (
    "id",
    "api_key",
    "description",
    "archived",
    "scopes",
    "projects",
    "expires_at",
    "created_at",
    "updated_at",
)


@credentials_app.command("create")
def create_credential(
    description: Annotated[str, typer.Option("--description", help="What the key is for.")] = "",
    scopes: Annotated[
        list[CredentialScope] | None,
        typer.Option(
            "--scope",
            help="What it may do (repeat for more): read, write (jobs and projects),"
            " execute (run, pause, resume), admin (everything, and signing secrets)."
            " Default: all four.",
        ),
    ] = None,
    projects: Annotated[
        list[int] | None,
        typer.Option(
            "--project",
            min=1,
            help="A project it may see and act on (repeat for more). Default: every project.",
        ),
    ] = None,
    expires_at: Annotated[
        str | None,
        typer.Option("--expires-at", help="When it stops working: ISO 8601 or unix seconds."),
    ] = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a client api key and secret. The secret is shown this once.

    Examples:

    \b
      scheduler0 credentials create --description "billing service"
      scheduler0 credentials create --scope read --project 3 --project 4
      scheduler0 credentials create --scope execute --expires-at 2030-01-01T00:00:00Z
      scheduler0 credentials create --json > cred.json
    """
    body: dict[str, Any] = {"description": description}
    if scopes:
        body["scopes"] = [str(scope) for scope in scopes]
    if projects:
        body["projects"] = projects
    if expires_at is not None:
        body["expires_at"] = _number_or_text(expires_at)
    with connect_operator(node, config) as client:
        data = call(client, "POST", "/credentials", body)
    if as_json:
        print_json(data)
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, key in (
        ("id", "id"),
        ("api key", "api_key"),
        ("api secret", "api_secret"),
        ("description", "description"),
        ("scopes", "scopes"),
        ("projects", "projects"),
        ("expires", "expires_at"),
    ):
        grid.add_row(label, escape(cell(data.get(key))))
    stdout().print(Panel(grid, title="New client credential", expand=False))
    say("Store the api secret now: it cannot be shown again.")


def _number_or_text(value: str) -> float | str:
    """Unix seconds as a number, anything else as given (the node checks it)."""
    try:
        return float(value)
    except ValueError:
        return value


@credentials_app.command("list")
def list_credentials(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    every: AllOption = False,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
) -> None:
    """List client credentials (never their secrets), oldest first.

    --json prints the page as the API answers it: {"total", "offset", "limit", "credentials"}.

    Example:

    \b
      scheduler0 credentials list --all --json
    """
    with connect_operator(node, config) as client:
        page = list_page(
            client, "/credentials", "credentials", limit=limit, offset=offset, every=every
        )
    if as_json:
        print_json(page)
    else:
        print_page(page, "credentials", COLUMNS)


@credentials_app.command("archive")
def archive_credential(
    credential_id: Annotated[
        int, typer.Argument(help="Id of the credential.", min=1, metavar="CREDENTIAL_ID")
    ],
    yes: YesOption = False,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
) -> None:
    """Archive a credential: requests with its key get 401 from then on.

    Asks first unless --yes; without a terminal to ask on, pass --yes.

    Example:

    \b
      scheduler0 credentials archive 3 --yes
    """
    with connect_operator(node, config) as client:
        if not yes:
            confirm(f"Archive credential {credential_id}? Clients using its key will be refused.")
        data = call(client, "POST", f"/credentials/{credential_id}/archive")
    if as_json:
        print_json(data)
    else:
        print_record(data, RECORD_KEYS)
        say(f"credential {credential_id} archived")
