"""What the resource commands share: options, auth, the client, errors, tables.

Auth, first match wins:

1. a client credential from ``--api-key``/``--api-secret`` or the environment
   (``SCHEDULER0_API_KEY``/``SCHEDULER0_API_SECRET``);
2. operator auth: the username/password of ``.scheduler0`` or
   ``SCHEDULER0_AUTH_USERNAME``/``SCHEDULER0_AUTH_PASSWORD`` (HTTP Basic and
   ``x-peer: cmd``), which the node accepts on every route.

The node is ``--node`` (or ``SCHEDULER0_NODE``), else this config's
``http://Host:Port``; every error the node answers names it. An https node
is verified against ``TLSCAFile`` (config.yml or ``SCHEDULER0_TLS_CA_FILE``),
else against the system's trust store.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from scheduler0.cli.output import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    OutputFormat,
    fail,
    json_wanted,
    output_format,
    say,
    stdout,
)
from scheduler0.client import ApiClient, Unreachable
from scheduler0.config import load_settings
from scheduler0.errors import ConfigError, NoQuorum, Scheduler0Error
from scheduler0.terminal import printable
from scheduler0.tls import CA_FILE_ENV

API_KEY_ENV = "SCHEDULER0_API_KEY"
API_SECRET_ENV = "SCHEDULER0_API_SECRET"
NODE_ENV = "SCHEDULER0_NODE"

EPILOG = (
    "Exit codes: 0 ok, 1 the API refused or failed (message on stderr),"
    " 2 bad usage or configuration, 3 node unreachable."
)

# The largest page every list route accepts: what --all asks for.
PAGE_SIZE = 1000

NodeOption = Annotated[
    str | None,
    typer.Option(
        "--node",
        envvar=NODE_ENV,
        show_envvar=True,
        help="Any node's base URL (default: this config's http://Host:Port).",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="config.yml to read (default: ./config.yml).", dir_okay=False),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar=API_KEY_ENV,
        help="Client api key (default: operator auth from .scheduler0).",
        show_envvar=True,
    ),
]
ApiSecretOption = Annotated[
    str | None,
    typer.Option(
        "--api-secret",
        envvar=API_SECRET_ENV,
        help="Client api secret, with --api-key.",
        show_envvar=True,
    ),
]


def _json_or_output(flag: bool) -> bool:
    """``--json``, or ``scheduler0 --output json`` given before the command."""
    return json_wanted(flag)


JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        callback=_json_or_output,
        help="Print the data as one JSON document (same as: scheduler0 --output json ...).",
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
LimitOption = Annotated[int, typer.Option("--limit", min=1, help="Rows per page.")]
OffsetOption = Annotated[int, typer.Option("--offset", min=0, help="Rows to skip first.")]
AllOption = Annotated[
    bool, typer.Option("--all", help="Page through every row (from --offset), not one page.")
]


def usage_error(message: str, *flags: str) -> NoReturn:
    """A bad combination of flags: exits 2 with typer's own usage-error message."""
    raise typer.BadParameter(message, param_hint=list(flags) or None)


def connect(
    node: str | None,
    config: Path | None,
    api_key: str | None = None,
    api_secret: str | None = None,
    *,
    timeout: float = 30.0,
) -> ApiClient:
    """A client for ``node`` with a client credential if given, else operator auth.
    Errors from then on name its URL (``api_errors``)."""
    client = _connect(node, config, api_key, api_secret, timeout=timeout)
    _Talking.to = client.base_url
    return client


class _Talking:
    """The node the command talks to, named in its error messages."""

    to: str | None = None


def _connect(
    node: str | None,
    config: Path | None,
    api_key: str | None,
    api_secret: str | None,
    *,
    timeout: float,
) -> ApiClient:
    if bool(api_key) != bool(api_secret):
        usage_error(
            f"give both (or {API_KEY_ENV} and {API_SECRET_ENV})", "--api-key", "--api-secret"
        )
    if api_key and api_secret and node:
        # No settings needed: the CA, if any, comes from the environment alone.
        ca_file = os.environ.get(CA_FILE_ENV) or None
        return ApiClient(
            node, api_key=api_key, api_secret=api_secret, timeout=timeout, ca_file=ca_file
        )
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        fail(exc.message, EXIT_CONFIG)
    url = node or settings.http_base_url
    ca = settings.tls_ca_file
    if api_key and api_secret:
        return ApiClient(url, api_key=api_key, api_secret=api_secret, timeout=timeout, ca_file=ca)
    if not (settings.auth_username and settings.auth_password):
        fail(
            "no credentials: pass --api-key/--api-secret (or set "
            f"{API_KEY_ENV}/{API_SECRET_ENV}), or give the operator username/password "
            "in .scheduler0 or SCHEDULER0_AUTH_USERNAME/SCHEDULER0_AUTH_PASSWORD",
            EXIT_CONFIG,
        )
    return ApiClient(
        url,
        username=settings.auth_username,
        password=settings.auth_password,
        timeout=timeout,
        ca_file=ca,
    )


def connect_operator(node: str | None, config: Path | None, timeout: float = 30.0) -> ApiClient:
    """Operator auth only (credential routes refuse client keys)."""
    return connect(node, config, timeout=timeout)


def describe(exc: Scheduler0Error, shown: int = 20) -> str:
    """The node's message, then every invalid field when there are several."""
    message = exc.message or exc.code
    if len(exc.details) < 2:
        return message
    lines = [message]
    for detail in exc.details[:shown]:
        where = f"item {detail.index}: " if detail.index is not None else ""
        lines.append(f"  {where}{detail.field}: {detail.message}")
    if len(exc.details) > shown:
        lines.append(f"  ... and {len(exc.details) - shown} more")
    return "\n".join(lines)


AMBIGUOUS_MARK = "may still be applied"
"""In a 503's message when the node proposed the write but could not see it
committed: it may or may not take effect (``errors.NotCommitted``)."""


def ambiguous(exc: Scheduler0Error) -> bool:
    """Whether a failed write may still take effect."""
    return isinstance(exc, NoQuorum) and AMBIGUOUS_MARK in exc.message


def explain(exc: Scheduler0Error) -> str:
    """The error as one message naming the node it came from. An ambiguous
    write says so once, and what to do, rather than the node's wording."""
    where = _Talking.to or "the node"
    if isinstance(exc, Unreachable):
        return exc.message  # it names the URL already
    if ambiguous(exc):
        return (
            f"the write is in doubt: {where} could not confirm it was committed"
            " (no quorum or no leader in time), and it may still take effect."
            " Check before retrying."
        )
    return f"{describe(exc)}\n(from {where})"


@contextmanager
def api_errors() -> Iterator[None]:
    """Map client errors to exit codes: 3 unreachable, 1 anything the API refused."""
    try:
        yield
    except Unreachable as exc:
        fail(explain(exc), EXIT_UNREACHABLE)
    except Scheduler0Error as exc:
        fail(explain(exc), EXIT_FAILED)


def call(client: ApiClient, method: str, path: str, body: Any = None, **params: Any) -> Any:
    """One request; exits with the right code on failure."""
    with api_errors():
        if method == "GET":
            return client.get(path, **params)
        if body is None:
            return client.request(method, path)
        return client.request(method, path, json=body)


def list_page(
    client: ApiClient,
    path: str,
    key: str,
    *,
    limit: int,
    offset: int,
    every: bool,
    **params: Any,
) -> dict[str, Any]:
    """One page, or (``every``) all pages from ``offset`` merged into one of the same shape."""
    with api_errors():
        if not every:
            page: dict[str, Any] = client.get(path, limit=limit, offset=offset, **params)
            return page
        rows: list[Any] = []
        total: Any = None
        for page in client.pages(path, key, offset=offset, page_size=PAGE_SIZE, **params):
            rows.extend(page.get(key) or [])
            total = page.get("total", total)
        return {"total": total, "offset": offset, "limit": len(rows), key: rows}


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def confirm(question: str) -> None:
    """Ask on stderr; anything but yes (EOF, Ctrl-C, "n") exits 1 having changed nothing."""
    # Not typer.confirm: it writes part of its prompt to stdout, which holds only data.
    sys.stderr.write(f"{question} [y/N]: ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except (KeyboardInterrupt, OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):  # EOF or Ctrl-C: end the prompt's line
        sys.stderr.write("\n")
    if answer.strip().lower() not in ("y", "yes"):
        fail("not confirmed, nothing changed (pass --yes to skip the question)", EXIT_FAILED)


def cell(value: Any) -> str:
    """A value from the node as one line of text: control and bidi characters
    shown as escapes (``scheduler0/terminal.py``), never sent to the terminal."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value)  # ASCII only: every control character is escaped
    return printable(str(value))


def table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> Table:
    """``columns`` are ``(heading, key)``; values are shown as text, never as markup.
    On a terminal long cells fold; elsewhere (``stdout``) the table is as wide as
    its cells."""
    out = Table()
    for heading, _ in columns:
        out.add_column(heading, overflow="fold")
    for row in rows:
        out.add_row(*(escape(cell(row.get(key))) for _, key in columns))
    return out


def tsv_line(values: Iterable[str]) -> str:
    """One TSV line: ``cell`` already shows tabs and newlines as escapes."""
    return "\t".join(values)


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """Rows in the chosen output format (``scheduler0 --output``)."""
    chosen = output_format()
    if chosen is OutputFormat.json:
        print_json(list(rows))
    elif chosen is OutputFormat.tsv:
        typer.echo(tsv_line(heading for heading, _ in columns))
        for row in rows:
            typer.echo(tsv_line(cell(row.get(key)) for _, key in columns))
    else:
        stdout().print(table(rows, columns))


def print_record(record: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    """One object as a two-column grid (field, value), or its TSV/JSON form."""
    shown = [key for key in keys or list(record) if key in record]
    chosen = output_format()
    if chosen is OutputFormat.json:
        print_json({key: record[key] for key in shown})
        return
    if chosen is OutputFormat.tsv:
        for key in shown:
            typer.echo(tsv_line((cell(key), cell(record[key]))))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key in shown:
        grid.add_row(escape(cell(key)), escape(cell(record[key])))
    stdout().print(grid)


def print_page(page: dict[str, Any], key: str, columns: Sequence[tuple[str, str]]) -> None:
    """A page as a table on stdout and where it sits in the whole on stderr."""
    if output_format() is OutputFormat.json:
        print_json(page)
        return
    rows = page.get(key) or []
    print_table(rows, columns)
    total, offset = page.get("total"), int(page.get("offset") or 0)
    if not rows:
        say(f"no {key}" + (f" at offset {offset} (total {total})" if offset else ""))
    elif isinstance(total, int) and offset + len(rows) < total:
        say(
            f"{key} {offset + 1}-{offset + len(rows)} of {total};"
            " more with --offset, or --all for every one"
        )
    else:
        say(f"{len(rows)} of {total} {key}")
