"""``scheduler0 executors list|get|create|update|delete``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from scheduler0.cli.context import (
    EPILOG,
    AllOption,
    ApiKeyOption,
    ApiSecretOption,
    ConfigOption,
    JsonOption,
    LimitOption,
    NodeOption,
    OffsetOption,
    YesOption,
    call,
    confirm,
    connect,
    list_page,
    print_json,
    print_page,
    print_record,
    usage_error,
)
from scheduler0.cli.output import say

executors_app = typer.Typer(
    help=(
        "Executors: named callback destinations (URL, method, signing secret) that jobs\n"
        "name by executor_id instead of a callback_url of their own.\n\n"
        "Example:\n\n\b\n"
        "  scheduler0 executors create --name billing --url https://hooks.example/billing"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
)

COLUMNS = (
    ("id", "id"),
    ("name", "name"),
    ("method", "webhook_method"),
    ("url", "webhook_url"),
    ("secret", "has_webhook_secret"),
    ("jobs", "jobs"),
    ("updated", "updated_at"),
)
RECORD_KEYS = (
    "id",
    "name",
    "type",
    "webhook_method",
    "webhook_url",
    "has_webhook_secret",
    "jobs",
    "created_by",
    "modified_by",
    "created_at",
    "updated_at",
)

ExecutorId = Annotated[
    int, typer.Argument(help="Id of the executor.", min=1, metavar="EXECUTOR_ID")
]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
MethodOption = Annotated[
    Method | None, typer.Option("--method", help="HTTP method of its callbacks (default POST).")
]
SecretOption = Annotated[
    str | None,
    typer.Option(
        "--secret",
        help="Secret that signs its callbacks (else the project's); never shown back.",
    ),
]


@executors_app.command("list")
def list_executors(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    every: AllOption = False,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """List executors, oldest first, one page at a time.

    --json prints the page as the API answers it: {"total", "offset", "limit", "executors"}.

    Examples:

    \b
      scheduler0 executors list
      scheduler0 executors list --all --json | jq '.executors[].webhook_url'
    """
    with connect(node, config, api_key, api_secret) as client:
        page = list_page(client, "/executors", "executors", limit=limit, offset=offset, every=every)
    if as_json:
        print_json(page)
    else:
        print_page(page, "executors", COLUMNS)


@executors_app.command("get")
def get_executor(
    executor_id: ExecutorId,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Show one executor and how many jobs use it (its secret is never shown).

    Example:

    \b
      scheduler0 executors get 1 --json
    """
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "GET", f"/executors/{executor_id}")
    if as_json:
        print_json(data)
    else:
        print_record(data, RECORD_KEYS)


@executors_app.command("create")
def create_executor(
    name: Annotated[str, typer.Option("--name", help="A name for people (need not be unique).")],
    url: Annotated[str, typer.Option("--url", help="Where its jobs' callbacks go.")],
    method: MethodOption = None,
    secret: SecretOption = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Create an executor (type webhook_url); jobs then name it with --executor.

    Example:

    \b
      scheduler0 executors create --name billing --url https://hooks.example/billing \\
          --method PUT --secret "$(openssl rand -hex 32)" --json
    """
    body: dict[str, Any] = {"name": name, "type": "webhook_url", "webhook_url": url}
    if method is not None:
        body["webhook_method"] = method
    if secret is not None:
        body["webhook_secret"] = secret
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "POST", "/executors", body)
    if as_json:
        print_json(data)
    else:
        print_record(data, RECORD_KEYS)
        say(f"executor {data['id']} created")


@executors_app.command("update")
def update_executor(
    executor_id: ExecutorId,
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="New callback URL.")] = None,
    method: MethodOption = None,
    secret: SecretOption = None,
    no_secret: Annotated[
        bool,
        typer.Option("--no-secret", help="Drop its secret: its jobs sign with their project's."),
    ] = False,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Change an executor: every later callback of its jobs goes the new way.

    Example:

    \b
      scheduler0 executors update 1 --url https://hooks.example/billing-v2
    """
    if secret is not None and no_secret:
        usage_error("give one of", "--secret", "--no-secret")
    body: dict[str, Any] = {
        key: value
        for key, value in (("name", name), ("webhook_url", url), ("webhook_method", method))
        if value is not None
    }
    if secret is not None or no_secret:
        body["webhook_secret"] = secret
    if not body:
        usage_error(
            "nothing to change: give at least one",
            "--name",
            "--url",
            "--method",
            "--secret",
            "--no-secret",
        )
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "PATCH", f"/executors/{executor_id}", body)
    if as_json:
        print_json(data)
    else:
        print_record(data, RECORD_KEYS)
        say(f"executor {executor_id} updated")


@executors_app.command("delete")
def delete_executor(
    executor_id: ExecutorId,
    yes: YesOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Delete an executor. The node refuses (exit 1) while jobs still use it.

    Asks first unless --yes; without a terminal to ask on, pass --yes.

    Example:

    \b
      scheduler0 executors delete 1 --yes
    """
    with connect(node, config, api_key, api_secret) as client:
        if not yes:
            confirm(f"Delete executor {executor_id}?")
        call(client, "DELETE", f"/executors/{executor_id}")
    say(f"executor {executor_id} deleted")
