"""``scheduler0 schedule preview``: a spec's next runs, before any job has it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from scheduler0.cli.context import (
    EPILOG,
    ApiKeyOption,
    ApiSecretOption,
    ConfigOption,
    JsonOption,
    NodeOption,
    call,
    connect,
    print_json,
    print_table,
)
from scheduler0.cli.output import say

schedule_app = typer.Typer(
    help=(
        "Schedules: check a spec and see when it would run, as the node computes it.\n\n"
        "Example:\n\n\b\n  scheduler0 schedule preview '0 9 * * 1-5' --timezone Europe/Paris -n 10"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
)

COLUMNS = (("run (local time)", "local"), ("UTC", "at"))


@schedule_app.command("preview")
def preview(
    spec: Annotated[
        str,
        typer.Argument(help="A cron spec (5 fields, or 6 seconds first), @daily... or @every 1h."),
    ],
    timezone: Annotated[
        str, typer.Option("--timezone", "-z", help="The job's IANA timezone.")
    ] = "UTC",
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=100, help="How many runs.")] = 5,
    after: Annotated[
        str | None,
        typer.Option(
            "--after", help="Runs after this instant: unix seconds or RFC 3339 (default now)."
        ),
    ] = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """The next runs of SPEC in a timezone, or the error creating a job with it would get.

    Example:

    \b
      scheduler0 schedule preview '0 9 * * 1-5' --timezone Europe/Paris -n 10
      scheduler0 schedule preview '30 1 * * *' -z America/New_York --after 2024-11-02T12:00:00Z
    """
    params: dict[str, Any] = {"spec": spec, "timezone": timezone, "count": count}
    if after is not None:
        params["after"] = after
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "GET", "/schedules/preview", **params)
    if as_json:
        print_json(data)
        return
    if not data["runs"]:
        say(f"{spec!r} has no run after {data['after']}")
        return
    print_table(data["runs"], COLUMNS)
