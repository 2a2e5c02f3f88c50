"""The console's panels. Each table is filled by ``show(...)`` from a message
handler and keeps its rows keyed, so a refresh updates cells in place and the
cursor stays on the row it was on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Label, Sparkline

from scheduler0.console import format as fmt
from scheduler0.console.follow import FollowState
from scheduler0.console.history import ClusterHistory
from scheduler0.console.sorting import EXECUTION_SORT_KEYS, JOB_SORT_KEYS, SortKey, SortOrder
from scheduler0.console.source import ClusterView, Execution, Job, Member, Project

Clock = Callable[[], float]
Row = tuple[str, Sequence[Any]]


def sync_rows(table: DataTable[Any], rows: Sequence[Row]) -> None:
    """Make ``table`` show ``rows`` (key, cells) in this order.

    Rows that stay are updated cell by cell and new rows are appended; when the
    order itself changes (new rows on top) the table is rebuilt. Either way the
    cursor ends on the same row key it was on, if that row is still there.
    """
    selected = selected_key(table)
    wanted = dict(rows)
    current = [key.value for key in table.rows if key.value is not None]
    kept = [key for key in current if key in wanted]
    new = [key for key, _ in rows if key not in set(current)]
    if [key for key, _ in rows] != kept + new or (current and not kept):
        table.clear()  # a new order, or a new page: rebuilt at once, not row by row
        kept, new = [], [key for key, _ in rows]
    for key in current:
        if key not in wanted and key in table.rows:
            table.remove_row(key)
    columns = [column.key for column in table.ordered_columns]
    for key in kept:
        for column, value in zip(columns, wanted[key], strict=True):
            if table.get_cell(key, column) != value:
                table.update_cell(key, column, value, update_width=True)
    for key in new:
        table.add_row(*wanted[key], key=key)
    if selected in wanted and selected_key(table) != selected:
        table.move_cursor(row=table.get_row_index(selected), scroll=False)


def selected_key(table: DataTable[Any]) -> str | None:
    """The row key under the cursor, if any."""
    if not table.row_count or not table.is_valid_row_index(table.cursor_row):
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


@dataclass
class Connection:
    """What the cluster bar shows; the app updates it, every bar renders it."""

    url: str
    view: ClusterView | None = None
    fetched_at: float | None = None
    failures: int = 0
    error: str | None = None
    unreachable: bool = False
    moved_from: str | None = None
    """The node the console left because it stopped answering, if it did."""


class ClusterBar(Widget):
    """One line, always on screen: node, leader, term, quorum, epoch, freshness."""

    DEFAULT_CSS = """
    ClusterBar { dock: top; height: 1; padding: 0 1; background: $primary-darken-2; }
    ClusterBar.-failing { background: $error-darken-1; }
    """

    def __init__(self, connection: Connection, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection = connection
        self.clock = clock

    def render(self) -> Text:
        c = self.connection
        view = c.view
        text = Text.assemble(("scheduler0 ", "bold"))
        text.append(f"node {view.node_id} {c.url}" if view else c.url)
        if c.moved_from:
            text.append(f" (moved here: {c.moved_from} unreachable)", style="bold yellow")
        text.append(" │ ")
        if c.failures:
            text.append(self.freshness(), style="bold")
            if view is not None:
                text.append(f" │ last known: {self._summary(view)}")
            return text
        if view is not None:
            text.append(self._summary(view))
            text.append(" │ quorum ")
            text.append(*(("yes", "green") if view.has_quorum else ("NO", "bold red")))
            text.append(" │ ")
        text.append(self.freshness())
        return text

    @staticmethod
    def _summary(view: ClusterView) -> str:
        leader = f"node {view.leader_node_id}" if view.leader_node_id else "none"
        return f"leader {leader} │ term {fmt.number(view.term)} │ epoch {fmt.number(view.epoch)}"

    def changed(self) -> None:
        """The connection changed: repaint (the age is repainted by the app's tick)."""
        self.set_class(self.connection.failures > 0, "-failing")
        self.refresh()

    def freshness(self) -> str:
        c = self.connection
        if c.failures:
            problem = "node unreachable" if c.unreachable else f"error: {c.error}"
            return f"{problem} — retrying {c.failures}/∞"
        if c.fetched_at is None:
            return "connecting…"
        return f"updated {max(0, int(self.clock() - c.fetched_at))} s ago"


class NodesTable(DataTable[Any]):
    COLUMNS = (
        ("node", "node"),
        ("address", "address"),
        ("role", "role"),
        ("health", "health"),
        ("last contact", "contact"),
        ("buckets", "buckets"),
        ("jobs", "jobs"),
        ("queue", "queue"),
        ("in flight", "in_flight"),
        ("fire lag p99", "lag"),
        ("delivery p99", "delivery"),
    )

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for label, key in self.COLUMNS:
            self.add_column(label, key=key)

    def show(self, view: ClusterView, now: float) -> None:
        sync_rows(self, [(str(m.node_id), _member_cells(m, view, now)) for m in view.members])

    def mark_unreachable(self, node_id: int) -> None:
        """The connected node stopped answering: its row must not keep saying up."""
        key = str(node_id)
        if key in self.rows:
            self.update_cell(key, "health", Text("unreachable", style="bold red"))


def _member_cells(m: Member, view: ClusterView, now: float) -> list[Any]:
    if not m.reachable:
        health = Text("unreachable", style="bold red")
    elif m.halted:
        health = Text("halted", style="bold red")
    elif m.over_memory:
        health = Text("over memory", style="yellow")
    elif m.low_disk:
        health = Text("low disk", style="yellow")
    else:
        health = Text("up", style="green")
    role = Text(m.role, style="bold" if m.role == "leader" else "")
    contact = "self" if m.node_id == view.node_id else fmt.ago(m.last_contact, now)
    return [
        str(m.node_id),
        m.address,
        role,
        health,
        contact,
        fmt.number(m.buckets_owned),
        fmt.number(m.jobs_owned),
        fmt.number(m.queue_depth),
        fmt.number(m.in_flight),
        fmt.seconds(m.fire_lag_p99_seconds),
        fmt.seconds(m.delivery_lag_p99_seconds),
    ]


class TableSorted(Message):
    """A table's order changed: the app says it in the panel's title."""

    def __init__(self, table: SortableTable) -> None:
        super().__init__()
        self.table = table


class SortableTable(DataTable[Any]):
    """A keyed table whose page of records can be ordered by a column
    (``sorting.SortOrder``): a header click, or ``S``/``R`` while it has focus.
    Subclasses say their ``COLUMNS``, ``SORT_KEYS`` and how a record becomes
    cells (``cells``); ``show_records`` keeps the last page to re-order it."""

    BINDINGS = [
        Binding(
            "S", "sort_next", "Sort by the next column (in the page)", id="table.sort", show=False
        ),
        Binding("R", "sort_reverse", "Reverse the sort", id="table.sort-reverse", show=False),
    ]
    COLUMNS: tuple[tuple[str, str], ...] = ()
    SORT_KEYS: dict[str, SortKey] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ordering = SortOrder()
        self._records: Sequence[Any] = ()
        self._now = 0.0

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for label, key in self.COLUMNS:
            self.add_column(label, key=key)

    def row_key(self, record: Any) -> str:
        return str(record.id)

    def cells(self, record: Any, now: float) -> list[Any]:
        raise NotImplementedError

    def show_records(self, records: Sequence[Any], now: float) -> None:
        self._records, self._now = records, now
        ordered = self.ordering.apply(records, self.SORT_KEYS)
        sync_rows(self, [(self.row_key(r), self.cells(r, now)) for r in ordered])

    def sort_by(self, order: SortOrder) -> None:
        self.ordering = order
        self.show_records(self._records, self._now)
        self.post_message(TableSorted(self))

    def sort_label(self) -> str:
        """'' in the node's order, else e.g. ``sorted by spec ↑ within this page``."""
        return self.ordering.describe({key: label for label, key in self.COLUMNS})

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if event.column_key.value is not None:
            self.sort_by(self.ordering.clicked(event.column_key.value))

    def action_sort_next(self) -> None:
        self.sort_by(self.ordering.next_column([key for _, key in self.COLUMNS]))

    def action_sort_reverse(self) -> None:
        self.sort_by(self.ordering.reversed())


class JobsTable(SortableTable):
    COLUMNS = (
        ("id", "id"),
        ("name", "name"),
        ("project", "project"),
        ("spec", "spec"),
        ("timezone", "timezone"),
        ("next run (UTC)", "next_run"),
        ("last status", "last_status"),
        ("paused", "paused"),
        ("callback", "callback"),
    )
    SORT_KEYS = JOB_SORT_KEYS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.projects: dict[int, Project] = {}

    def show(self, jobs: Sequence[Job], projects: dict[int, Project], now: float) -> None:
        self.projects = projects
        self.show_records(jobs, now)

    def cells(self, record: Any, now: float) -> list[Any]:
        return job_cells(record, self.projects, now)


def job_cells(job: Job, projects: dict[int, Project], now: float) -> list[Any]:
    project = projects.get(job.project_id)
    return [
        str(job.id),
        job.name or "-",
        f"{job.project_id} {project.name}" if project else str(job.project_id),
        job.spec,
        job.timezone,
        "-" if job.paused else fmt.clock_time(job.next_run_at, now),
        fmt.state_text(job.last_state, job.last_status_code),
        fmt.yes_no(job.paused),
        job.callback_url,
    ]


class ExecutionTable(SortableTable):
    """Executions, newest first, state coloured (the log and a job's history)."""

    COLUMNS = (
        ("scheduled (UTC)", "scheduled"),
        ("job", "job"),
        ("execution", "execution"),
        ("trigger", "trigger"),
        ("state", "state"),
        ("code", "code"),
        ("attempts", "attempts"),
        ("latency", "latency"),
        ("node", "node"),
        ("error", "error"),
    )
    SORT_KEYS = EXECUTION_SORT_KEYS

    def show(self, executions: Sequence[Execution], now: float) -> None:
        self.show_records(executions, now)

    def cells(self, record: Any, now: float) -> list[Any]:
        return _execution_cells(record, now)


def _execution_cells(e: Execution, now: float) -> list[Any]:
    return [
        fmt.clock_time(e.scheduled_at, now),
        str(e.job_id),
        e.execution_id,
        e.trigger,
        fmt.state_text(e.state),
        fmt.number(e.status_code),
        fmt.number(e.attempts),
        "-" if e.latency_ms is None else f"{e.latency_ms} ms",
        fmt.number(e.node_id),
        Text(e.error or "", style="red"),
    ]


class LogTable(ExecutionTable):
    """The live execution log: follows the newest rows (top) unless the operator
    moved away; ``follow`` decides, the panel's border says how many are newer."""

    BINDINGS = [
        Binding("end", "follow_newest", "Log: follow newest (newest first again)", id="log.follow")
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.follow = FollowState()

    def at_top(self) -> bool:
        return self.cursor_row <= 0 and self.scroll_y <= 0

    def show(self, executions: Sequence[Execution], now: float) -> None:
        if self.ordering.column is not None:  # the operator ordered the page: no following
            super().show(executions, now)
            self._show_banner()
            return
        shown = [int(key.value) for key in self.rows if key.value is not None]
        self.follow.observe(self.at_top(), shown)
        top = max(shown, default=None)
        ids = [e.id for e in executions]
        super().show(executions, now)
        self.follow.landed(ids)
        if self.follow.following:
            self._to_newest()
        elif top is not None:
            # Rows that arrived above keep the operator's rows where they were.
            above = sum(1 for row_id in ids if row_id > top)
            if above:
                self.scroll_to(y=self.scroll_y + above, animate=False, immediate=True)
        self._show_banner()

    def action_follow_newest(self) -> None:
        if self.ordering.column is not None:
            self.sort_by(SortOrder())
        self.follow.resume()
        self._to_newest()
        self._show_banner()

    def _to_newest(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, scroll=False)
        self.scroll_to(y=0, animate=False, immediate=True)

    def _show_banner(self) -> None:
        if isinstance(self.parent, Widget):
            sorted_note = "sorted — End: newest first again" if self.ordering.column else ""
            self.parent.border_subtitle = sorted_note or self.follow.banner()


class NodeActivity(Horizontal):
    """One node's sparklines: fires per second and delivery lateness p99."""

    DEFAULT_CSS = """
    NodeActivity { height: 1; }
    NodeActivity Label { width: auto; padding: 0 1; }
    NodeActivity .spark-value { width: 10; }
    NodeActivity Sparkline { width: 1fr; height: 1; }
    """

    def __init__(self, node_id: int) -> None:
        super().__init__(id=f"activity-{node_id}")
        self.node_id = node_id
        self._points: tuple[list[float], list[float]] = ([], [])
        self._composed = False

    def compose(self) -> ComposeResult:
        yield Label(f"node {self.node_id}  fires/s")
        yield Sparkline([], summary_function=max, classes="fires")
        yield Label("-", classes="spark-value fires-now")
        yield Label("delivery p99")
        yield Sparkline([], summary_function=max, classes="delivery")
        yield Label("-", classes="spark-value delivery-now")

    def on_mount(self) -> None:
        self._composed = True  # its children exist from here (``is_mounted`` comes later)
        self.show(*self._points)

    def show(self, fires: Sequence[float], delivery: Sequence[float]) -> None:
        """Draw the series; before the row is mounted (its children composed),
        keep them for ``on_mount``: a refresh can come between the two."""
        self._points = (list(fires), list(delivery))
        if not self._composed:
            return
        self.query_one(".fires", Sparkline).data = list(fires)
        self.query_one(".delivery", Sparkline).data = list(delivery)
        self.query_one(".fires-now", Label).update(f"{fires[-1]:.1f}" if fires else "-")
        self.query_one(".delivery-now", Label).update(
            fmt.seconds(delivery[-1] if delivery else None)
        )


class ActivityPanel(Vertical):
    """A row of sparklines per member, over the last minutes (``ClusterHistory``)."""

    DEFAULT_CSS = "ActivityPanel { height: auto; }"

    def show(self, view: ClusterView, history: ClusterHistory) -> None:
        wanted = [m.node_id for m in view.members]
        for row in list(self.query(NodeActivity)):
            if row.node_id not in wanted:
                row.remove()
        present: dict[int, NodeActivity] = {row.node_id: row for row in self.query(NodeActivity)}
        for node_id in wanted:
            series = history.series(node_id)
            points = (list(series.fires_per_second), list(series.delivery_p99))
            if node_id in present:
                present[node_id].show(*points)
            else:
                row = NodeActivity(node_id)
                row.show(*points)  # kept until it is mounted
                self.mount(row)

    def clear(self) -> None:
        self.remove_children()
