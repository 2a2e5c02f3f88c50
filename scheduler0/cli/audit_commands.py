"""``scheduler0 audit list``: who deleted what, and when (``GET /audit``)."""

from __future__ import annotations

from typing import Annotated, Any

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
    connect,
    list_page,
    print_json,
    print_page,
)
from scheduler0.models import AuditKind

audit_app = typer.Typer(
    help=(
        "The audit log: who deleted which project, job or credential, and when.\n"
        "Operators see every record; a client key, those of its projects.\n\n"
        "Example:\n\n\b\n  scheduler0 audit list --kind job --json"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
)

COLUMNS = (
    ("id", "id"),
    ("at", "at"),
    ("action", "action"),
    ("kind", "kind"),
    ("object", "object_id"),
    ("name", "name"),
    ("project", "project_id"),
    ("by", "by"),
    ("as", "principal"),
)


@audit_app.command("list")
def list_audit(
    kind: Annotated[
        AuditKind | None, typer.Option("--kind", help="Only records of this kind of object.")
    ] = None,
    project: Annotated[
        int | None, typer.Option("--project", min=1, help="Only records of this project.")
    ] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    every: AllOption = False,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """List the audit log, newest first, one page at a time.

    --json prints the page as the API answers it: {"total", "offset", "limit", "records"}.

    Examples:

    \b
      scheduler0 audit list
      scheduler0 audit list --kind credential --all --json
      scheduler0 audit list --project 3
    """
    params: dict[str, Any] = {}
    if kind is not None:
        params["kind"] = str(kind)
    if project is not None:
        params["projectId"] = project
    with connect(node, config, api_key, api_secret) as client:
        page = list_page(
            client, "/audit", "records", limit=limit, offset=offset, every=every, **params
        )
    if as_json:
        print_json(page)
    else:
        print_page(page, "records", COLUMNS)
