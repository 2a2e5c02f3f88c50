"""Column sorting of the jobs and executions tables.

The node's lists have one order each (jobs by id, executions newest first) and
no parameter to change it, so a sort orders the rows of the page on screen
only; the panel says so ("within this page"), lest an operator read the top
row as the largest of all. A click on a column header sorts by it, a second
click on the same header reverses, a third returns to the node's order; ``S``
steps through the columns and ``R`` reverses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
SortKey = Callable[[Any], Any]


@dataclass(frozen=True)
class SortOrder:
    """The column the rows are ordered by (None: the node's order) and which way."""

    column: str | None = None
    descending: bool = False

    def clicked(self, column: str) -> SortOrder:
        """A header click: sort by it, then reverse it, then the node's order."""
        if column != self.column:
            return SortOrder(column)
        if not self.descending:
            return SortOrder(column, descending=True)
        return SortOrder()

    def next_column(self, columns: Sequence[str]) -> SortOrder:
        """``S``: the node's order, then each column in turn, then the node's again."""
        if self.column is None or self.column not in columns:
            return SortOrder(columns[0]) if columns else SortOrder()
        at = list(columns).index(self.column) + 1
        return SortOrder(columns[at]) if at < len(columns) else SortOrder()

    def reversed(self) -> SortOrder:
        return SortOrder(self.column, not self.descending) if self.column else self

    def apply(self, rows: Sequence[T], keys: dict[str, SortKey]) -> list[T]:
        """``rows`` in this order; stable, so ties keep the node's order."""
        key = keys.get(self.column or "")
        if key is None:
            return list(rows)
        return sorted(rows, key=key, reverse=self.descending)

    def describe(self, labels: dict[str, str]) -> str:
        """What the panel says: '' in the node's order."""
        if self.column is None:
            return ""
        arrow = "↓" if self.descending else "↑"
        return f"sorted by {labels.get(self.column, self.column)} {arrow} within this page"


def _text(value: str | None) -> str:
    return (value or "").casefold()


def _number(value: int | None) -> int:
    return -1 if value is None else value


JOB_SORT_KEYS: dict[str, SortKey] = {
    "id": lambda j: j.id,
    "name": lambda j: (j.name is None, _text(j.name)),
    "project": lambda j: j.project_id,
    "spec": lambda j: j.spec,
    "timezone": lambda j: j.timezone,
    "next_run": lambda j: (j.paused or j.next_run_at is None, j.next_run_at or ""),
    "last_status": lambda j: (_text(j.last_state), _number(j.last_status_code)),
    "paused": lambda j: j.paused,
    "callback": lambda j: _text(j.callback_url),
}
"""Per ``JobsTable`` column: the value its rows sort by (blanks last going up)."""

EXECUTION_SORT_KEYS: dict[str, SortKey] = {
    "scheduled": lambda e: (e.scheduled_at, e.id),
    "job": lambda e: e.job_id,
    "execution": lambda e: e.execution_id,
    "trigger": lambda e: e.trigger,
    "state": lambda e: e.state,
    "code": lambda e: _number(e.status_code),
    "attempts": lambda e: _number(e.attempts),
    "latency": lambda e: _number(e.latency_ms),
    "node": lambda e: _number(e.node_id),
    "error": lambda e: _text(e.error),
}
"""Per ``ExecutionTable`` column: the value its rows sort by."""
