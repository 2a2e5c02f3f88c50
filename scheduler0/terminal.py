"""What may reach an operator's terminal, and what a name may hold.

Any string that came from a node (a project's name, a job's URL, an error
message) is shown by the CLI and the console through :func:`printable`: a
control character (C0, DEL, C1, and so ESC and every escape sequence) or a
bidirectional control (which reorders what follows it on screen) is shown as
a visible escape such as ``\\x1b`` or ``\\u202e``, never written as it is.
Otherwise a project named ``evil\\x1b[2J`` clears the operator's screen and a
name holding U+202E shows its tail reversed.
"""

from __future__ import annotations

import re

BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
"""The Unicode bidirectional formatting characters (UAX #9): marks, embeddings,
overrides and isolates."""

_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI_CONTROLS}]")
_UNSAFE_KEEPING_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{BIDI_CONTROLS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every control and bidi character shown as an escape
    (``keep_newlines``: a multi-line message of our own keeps its lines)."""
    pattern = _UNSAFE_KEEPING_NEWLINES if keep_newlines else _UNSAFE
    return pattern.sub(_escape, text)


def unsafe_character(text: str, allowed: str = "") -> str | None:
    """The first control or bidi character of ``text`` not in ``allowed``, or None."""
    for match in _UNSAFE.finditer(text):
        if match.group() not in allowed:
            return match.group()
    return None
