"""``scheduler0 executions list|tail``: the history of callbacks."""

from __future__ import annotations

import json
import signal
import threading
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

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
    api_errors,
    cell,
    connect,
    list_page,
    print_json,
    print_page,
    usage_error,
)
from scheduler0.cli.output import EXIT_FAILED, fail, say, stdout
from scheduler0.client import ApiClient, Unreachable
from scheduler0.errors import Scheduler0Error

executions_app = typer.Typer(
    help=(
        "Executions: one row per fired (or missed) slot of a job, newest first.\n\n"
        "Example:\n\n\b\n  scheduler0 executions tail --follow"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
)


class State(StrEnum):
    """The states the API filters on (GET /executions?state=)."""

    pending = "pending"
    dispatched = "dispatched"
    success = "success"
    failed = "failed"
    missed = "missed"
    lost = "lost"
    skipped = "skipped"


class Trigger(StrEnum):
    """What made a run (GET /executions?trigger=)."""

    schedule = "schedule"
    manual = "manual"
    backfill = "backfill"
    catchup = "catchup"


STATE_STYLES = {
    "success": "green",
    "failed": "red",
    "lost": "red",
    "missed": "yellow",
    "skipped": "yellow",
    "dispatched": "cyan",
    "pending": "dim",
}
# Rows asked for per poll of tail --follow, and how many pages one poll may read.
POLL_PAGE = 1000
POLL_PAGES = 10
# Row ids remembered by tail --follow (the oldest are forgotten first).
SEEN_MAX = 100_000

COLUMNS = (
    ("execution", "execution_id"),
    ("job", "job_id"),
    ("project", "project_id"),
    ("scheduled", "scheduled_at"),
    ("trigger", "trigger"),
    ("state", "state"),
    ("status", "status_code"),
    ("latency ms", "latency_ms"),
    ("attempts", "attempts"),
    ("node", "node_id"),
    ("error", "error"),
)

JobFilter = Annotated[int | None, typer.Option("--job", min=1, help="Only this job's runs.")]
ProjectFilter = Annotated[
    int | None, typer.Option("--project", min=1, help="Only this project's runs.")
]
StateFilter = Annotated[
    State | None, typer.Option("--state", case_sensitive=False, help="Only runs in this state.")
]
TriggerFilter = Annotated[
    Trigger | None,
    typer.Option(
        "--trigger",
        case_sensitive=False,
        help="Only runs made this way (manual: run-now; schedule: the job's own slots).",
    ),
]


def _filters(
    job: int | None, project: int | None, state: State | None, trigger: Trigger | None = None
) -> dict[str, Any]:
    return {
        "jobId": job,
        "projectId": project,
        "state": None if state is None else state.value,
        "trigger": None if trigger is None else trigger.value,
    }


@executions_app.command("list")
def list_executions(
    job: JobFilter = None,
    project: ProjectFilter = None,
    state: StateFilter = None,
    trigger: TriggerFilter = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Scheduled at or after: unix seconds or ISO 8601."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Scheduled before: unix seconds or ISO 8601.")
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
    """List executions, newest first, one page at a time.

    --json prints the page as the API answers it: {"total", "offset", "limit", "executions"}.

    Examples:

    \b
      scheduler0 executions list --job 42 --state failed
      scheduler0 executions list --trigger manual
      scheduler0 executions list --since 2025-01-01T00:00:00Z --all --json
    """
    params = {**_filters(job, project, state, trigger), "since": since, "until": until}
    with connect(node, config, api_key, api_secret) as client:
        page = list_page(
            client, "/executions", "executions", limit=limit, offset=offset, every=every, **params
        )
    if as_json:
        print_json(page)
    else:
        print_page(page, "executions", COLUMNS)


def _line(row: dict[str, Any]) -> str:
    """One execution as a line of rich markup (values escaped)."""
    state = str(row.get("state") or "?")
    style = STATE_STYLES.get(state, "")
    status = row.get("status_code")
    latency = row.get("latency_ms")
    parts = [
        escape(cell(row.get("scheduled_at") or "-")),
        escape(f"{cell(row.get('execution_id') or row.get('id')):<22}"),
        f"[{style}]{escape(f'{state:<10}')}[/]" if style else escape(f"{cell(state):<10}"),
        f"status {status if status is not None else '-':<4}",
        f"{latency if latency is not None else '-':>6} ms",
        f"attempts {row.get('attempts') or 0}",
        f"node {row.get('node_id') if row.get('node_id') is not None else '-'}",
    ]
    trigger = row.get("trigger")
    if trigger and trigger != "schedule":
        parts.append(escape(cell(trigger)))
    if row.get("error"):
        parts.append(escape(cell(row["error"])))
    return "  ".join(parts)


def _emit(rows: list[dict[str, Any]], as_json: bool) -> None:
    """Rows oldest first (``rows`` come newest first)."""
    console = stdout()
    for row in reversed(rows):
        if as_json:
            typer.echo(json.dumps(row, default=str))
        else:
            console.print(_line(row), highlight=False)


def _newest(client: ApiClient, limit: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    page = client.get("/executions", limit=limit, offset=0, **params)
    rows: list[dict[str, Any]] = page.get("executions") or []
    return rows


def _changed_since(
    client: ApiClient, seen: dict[int, str], params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Rows not seen yet, or whose state changed, newest first.

    Reads newest-first pages until a page reaches rows already seen (at most
    ``POLL_PAGES`` pages a poll).
    """
    fresh: list[dict[str, Any]] = []
    for number, page in enumerate(
        client.pages("/executions", "executions", page_size=POLL_PAGE, **params)
    ):
        rows: list[dict[str, Any]] = page.get("executions") or []
        fresh.extend(r for r in rows if seen.get(r["id"]) != r.get("state"))
        if any(r["id"] in seen for r in rows) or not seen:
            break
        if number + 1 >= POLL_PAGES:
            say("[yellow]warning:[/] more new executions than one poll reads; some were skipped")
            break
    return fresh


def _remember(seen: dict[int, str], rows: list[dict[str, Any]]) -> None:
    for row in reversed(rows):  # oldest first: the oldest are forgotten first
        seen.pop(row["id"], None)
        seen[row["id"]] = str(row.get("state"))
    while len(seen) > SEEN_MAX:
        del seen[next(iter(seen))]


@executions_app.command("tail")
def tail(
    job: JobFilter = None,
    project: ProjectFilter = None,
    state: StateFilter = None,
    trigger: TriggerFilter = None,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=1, max=1000, help="How many recent runs to show.")
    ] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep polling and print new runs; Ctrl-C stops.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between polls with --follow.")
    ] = 2.0,
    as_json: JsonOption = False,
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json-lines",
            help="One JSON object per line (JSON Lines), oldest first: the form for --follow.",
        ),
    ] = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Print the last N executions, oldest first; with --follow, keep printing new ones.

    --json prints them as one JSON array (oldest first); a stream (--follow)
    has no end, so it takes --json-lines: one object per line.

    --follow polls GET /executions every --interval seconds until Ctrl-C (exit
    0). A run is printed when first seen and again when its state changes
    (pending, dispatched, then success or failed). If the node stops answering
    while following, a warning goes to stderr and polling goes on.

    Examples:

    \b
      scheduler0 executions tail -n 50 --job 42
      scheduler0 executions tail --follow --state failed --json-lines | jq .error
      scheduler0 executions tail -n 100 --json | python -m json.tool
    """
    if as_json and (follow or json_lines):
        usage_error(
            "--json prints one JSON document, which a stream never ends;"
            " use --json-lines with --follow",
            "--json",
        )
    params = _filters(job, project, state, trigger)
    seen: dict[int, str] = {}
    with connect(node, config, api_key, api_secret) as client:
        with api_errors():
            rows = _newest(client, lines, params)
        if as_json:
            print_json(list(reversed(rows)))
            return
        _emit(rows, json_lines)
        if not rows and not json_lines:
            say("no executions yet" + (", waiting for new ones (Ctrl-C stops)" if follow else ""))
        if not follow:
            return
        _remember(seen, rows)
        # Ctrl-C sets a flag the loop checks between polls, so it never lands
        # inside a request or a half-written line.
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
        try:
            _follow(client, seen, params, interval, json_lines, stop)
        finally:
            signal.signal(signal.SIGINT, previous)


def _follow(
    client: ApiClient,
    seen: dict[int, str],
    params: dict[str, Any],
    interval: float,
    as_json: bool,
    stop: threading.Event,
) -> None:
    warned = False
    while not stop.wait(interval):
        try:
            rows = _changed_since(client, seen, params)
        except Unreachable as exc:
            if not warned:
                say(f"[yellow]warning:[/] {escape(exc.message)}; still polling")
                warned = True
            continue
        except Scheduler0Error as exc:
            fail(exc.message, EXIT_FAILED)
        if warned:
            say("node answering again")
            warned = False
        _emit(rows, as_json)
        _remember(seen, rows)
