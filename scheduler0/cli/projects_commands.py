"""``scheduler0 projects list|get|create|update|delete``."""

from __future__ import annotations

from typing import Annotated

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

projects_app = typer.Typer(
    help=(
        "Projects group jobs; each has the signing secret of its callbacks.\n\n"
        "Example:\n\n\b\n  scheduler0 projects create --name calendar"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
)

COLUMNS = (
    ("id", "id"),
    ("name", "name"),
    ("description", "description"),
    ("created", "created_at"),
    ("updated", "updated_at"),
)
RECORD_KEYS = ("id", "name", "description", "signing_secret", "created_at", "updated_at")

ProjectId = Annotated[int, typer.Argument(help="Id of the project.", min=1, metavar="PROJECT_ID")]


@projects_app.command("list")
def list_projects(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    every: AllOption = False,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """List projects, oldest first, one page at a time.

    --json prints the page as the API answers it: {"total", "offset", "limit", "projects"}.

    Examples:

    \b
      scheduler0 projects list
      scheduler0 projects list --all --json | jq '.projects[].name'
    """
    with connect(node, config, api_key, api_secret) as client:
        page = list_page(client, "/projects", "projects", limit=limit, offset=offset, every=every)
    if as_json:
        print_json(page)
    else:
        print_page(page, "projects", COLUMNS)


@projects_app.command("get")
def get_project(
    project_id: ProjectId,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Show one project, with the signing secret its callbacks are signed with.

    Example:

    \b
      scheduler0 projects get 1 --json
    """
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "GET", f"/projects/{project_id}")
    if as_json:
        print_json(data)
    else:
        print_record(data, RECORD_KEYS)


@projects_app.command("create")
def create_project(
    name: Annotated[str, typer.Option("--name", help="Unique name.")],
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Create a project; prints it with its new signing secret.

    Example:

    \b
      scheduler0 projects create --name calendar --description "reminders" --json
    """
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "POST", "/projects", {"name": name, "description": description})
    if as_json:
        print_json(data)
    else:
        print_record(data, RECORD_KEYS)
        say(f"project {data['id']} created")


@projects_app.command("update")
def update_project(
    project_id: ProjectId,
    name: Annotated[str | None, typer.Option("--name", help="New unique name.")] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="New description.")
    ] = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Rename a project or change its description.

    Example:

    \b
      scheduler0 projects update 1 --description "calendar reminders"
    """
    body = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
    if not body:
        usage_error("nothing to change: give at least one", "--name", "--description")
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "PUT", f"/projects/{project_id}", body)
    if as_json:
        print_json(data)
    else:
        print_record(data, RECORD_KEYS)
        say(f"project {project_id} updated")


@projects_app.command("delete")
def delete_project(
    project_id: ProjectId,
    yes: YesOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Delete a project. The node refuses (exit 1) while the project has jobs.

    Asks first unless --yes; without a terminal to ask on, pass --yes.

    Example:

    \b
      scheduler0 projects delete 1 --yes
    """
    with connect(node, config, api_key, api_secret) as client:
        if not yes:
            confirm(f"Delete project {project_id}?")
        call(client, "DELETE", f"/projects/{project_id}")
    say(f"project {project_id} deleted")
