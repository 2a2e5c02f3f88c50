"""Where the CLI writes: data on stdout, messages on stderr (clig.dev).

Exit codes shared by every command:

    0  success
    1  refused or failed (file exists, the API answered with an error)
    2  invalid configuration (the message names the key)
    3  the node could not be reached
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from scheduler0.terminal import printable

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3


def stdout() -> Console:
    # Built per call so test runners that swap sys.stdout see the output.
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
