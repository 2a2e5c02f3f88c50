"""Where the CLI writes: data on stdout, messages on stderr (clig.dev).

Exit codes shared by every command:

    0  success
    1  refused or failed (file exists, the API answered with an error)
    2  invalid configuration (the message names the key)
    3  the node could not be reached

How data is shown is chosen once for the whole command (``--output`` before the
command, or ``SCHEDULER0_OUTPUT``): ``table`` (the default), ``wide`` (tables
never folded, even on a terminal), ``tsv`` (a header line and tab-separated
rows) or ``json`` (what ``--json`` prints). Tables written to a pipe or a file
are never wrapped at 80 columns: they take the width their cells need.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import NoReturn

import typer
from rich.console import Console

from scheduler0.terminal import printable

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3

OUTPUT_ENV = "SCHEDULER0_OUTPUT"

UNBOUNDED_WIDTH = 100_000
"""The width tables get off a terminal (or with ``--output wide``): as wide as
their cells, never folded."""


class OutputFormat(StrEnum):
    table = "table"
    wide = "wide"
    tsv = "tsv"
    json = "json"


class _Choice:
    """The output format of the command being run (set by the top-level callback)."""

    format = OutputFormat.table


def set_output(chosen: OutputFormat) -> None:
    _Choice.format = chosen


def output_format() -> OutputFormat:
    return _Choice.format


def json_wanted(flag: bool) -> bool:
    """A command's ``--json`` flag, or ``--output json`` for the whole command."""
    return flag or _Choice.format is OutputFormat.json


def _unbounded() -> bool:
    """Whether stdout tables may be as wide as they need: not a terminal, or wide."""
    if _Choice.format is OutputFormat.wide:
        return True
    isatty = getattr(sys.stdout, "isatty", None)
    return not (callable(isatty) and isatty())


def stdout() -> Console:
    # Built per call so test runners that swap sys.stdout see the output.
    if _unbounded():
        return Console(soft_wrap=True, width=UNBOUNDED_WIDTH)
    return Console(soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def say(message: str) -> None:
    """A progress or status message, on stderr. ``message`` is rich markup; a
    control character in it (from a value the node sent) is shown escaped."""
    stderr().print(printable(message, keep_newlines=True))


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``message`` (plain text, not markup) on stderr and exit with ``code``.
    It often quotes the node's error message: control characters are escaped."""
    console = stderr()
    console.print("[bold red]error:[/] ", end="")
    console.print(printable(message, keep_newlines=True), markup=False)
    raise typer.Exit(code)
