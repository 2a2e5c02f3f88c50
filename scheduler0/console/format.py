"""Cell texts: times in UTC, ages against the app's clock, states in colour."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text

STATE_STYLES = {
    "success": "green",
    "failed": "bold red",
    "missed": "yellow",
    "skipped": "yellow",
    "lost": "magenta",
    "dispatched": "cyan",
}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clock_time(value: str | None, now: float) -> str:
    """``HH:MM:SS`` today (UTC), ``MM-DD HH:MM`` on another day, ``-`` for none."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    today = datetime.fromtimestamp(now, UTC).date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%m-%d %H:%M")


def ago(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "-"
    seconds = max(0.0, now - timestamp)
    if seconds < 10:
        return f"{seconds:.1f} s ago"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


def state_text(state: str | None, status_code: int | None = None) -> Text:
    if not state:
        return Text("-", style="dim")
    # A dispatched or missed run has no answer yet: its code would be the previous run's.
    shown = status_code is not None and state in ("success", "failed")
    label = f"{state} {status_code}" if shown else state
    return Text(label, style=STATE_STYLES.get(state, ""))


def number(value: int | None) -> str:
    return "-" if value is None else str(value)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def yes_no(flag: bool) -> Text:
    return Text("yes", style="yellow") if flag else Text("no", style="dim")
