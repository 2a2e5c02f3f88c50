"""Screens: the main one (bar, nodes, jobs, log), a job's page, and the modal
pickers. They lay widgets out and answer their own keys; the app feeds them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    OptionList,
    Sparkline,
    Static,
)
from textual.widgets.option_list import Option

from scheduler0.console import format as fmt
from scheduler0.console.history import lateness
from scheduler0.console.job_summary import JobSummary
from scheduler0.console.source import ClusterView, Execution, Job, Project, SignIn
from scheduler0.console.widgets import (
    ActivityPanel,
    Clock,
    ClusterBar,
    Connection,
    ExecutionTable,
    JobsTable,
    LogTable,
    NodesTable,
    sync_rows,
)
from scheduler0.terminal import printable

PANEL_CSS = """
.panel { border: round $primary-lighten-1; border-title-color: $text; padding: 0 0; }
.panel:focus-within { border: round $accent; }
.panel .panel-error { color: $error; height: auto; padding: 0 1; }
.panel .panel-error.-empty { display: none; }
.panel DataTable.-stale { text-opacity: 60%; }
"""


class MainScreen(Screen[None]):
    DEFAULT_CSS = (
        PANEL_CSS
        + """
    MainScreen #nodes-panel { height: auto; max-height: 10; }
    MainScreen #nodes { height: auto; max-height: 8; }
    MainScreen #activity-panel { height: auto; max-height: 9; }
    MainScreen #jobs-panel { height: 1fr; min-height: 8; }
    MainScreen #job-filter { dock: top; display: none; }
    MainScreen #job-filter.-shown { display: block; }
    MainScreen #log-panel { height: 1fr; min-height: 8; }
    """
    )
    BINDINGS = [
        Binding("escape", "clear_filter", "Clear filter", id="jobs.clear-filter", show=False)
    ]

    def __init__(self, connection: Connection, clock: Clock) -> None:
        super().__init__()
        self.connection = connection
        self.clock = clock
        self._errors: dict[str, str] = {}
        self._ages: dict[str, float | None] = {}

    def compose(self) -> ComposeResult:
        yield ClusterBar(self.connection, self.clock)
        with Vertical(id="nodes-panel", classes="panel"):
            yield Label("", classes="panel-error -empty")
            yield NodesTable(id="nodes")
        with Vertical(id="activity-panel", classes="panel"):
            yield ActivityPanel(id="activity")
        with Vertical(id="jobs-panel", classes="panel"):
            yield Input(
                placeholder="search jobs on the node: key=value labels, text in name, URL or spec",
                id="job-filter",
            )
            yield Label("", classes="panel-error -empty")
            yield JobsTable(id="jobs")
        with Vertical(id="log-panel", classes="panel"):
            yield Label("", classes="panel-error -empty")
            yield LogTable(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#nodes-panel").border_title = "Nodes"
        self.query_one(
            "#activity-panel"
        ).border_title = "Activity — last 5 min: fires per second, delivery lateness p99"
        self.query_one("#jobs-panel").border_title = "Jobs"
        self.query_one("#log-panel").border_title = "Executions"
        self.query_one(JobsTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#job-filter", Input)
        box.value = ""
        box.remove_class("-shown")
        self.query_one(JobsTable).focus()

    def show_error(self, panel: str, error: str) -> None:
        """An error in place: a red line at the top of the panel; '' clears it."""
        self._errors[panel] = error
        self._show_notice(panel)

    def mark_stale(self, panel: str, age: float | None) -> None:
        """Rows older than one refresh are dimmed and say how old they are."""
        for table in self.query(f"#{panel}-panel DataTable"):
            table.set_class(age is not None, "-stale")
        self._ages[panel] = age
        self._show_notice(panel)

    def _show_notice(self, panel: str) -> None:
        age, error = self._ages.get(panel), self._errors.get(panel, "")
        stale = f"stale: these rows are {age:.0f} s old" if age is not None else ""
        text = " — ".join(part for part in (stale, error) if part)
        # No label while the app closes: an answer still in flight may land then.
        for label in self.query(f"#{panel}-panel .panel-error").results(Label):
            label.update(text)
            label.set_class(not text, "-empty")


class JobScreen(Screen[None]):
    """One job: its fields and its execution history. Job keys act on this job."""

    DEFAULT_CSS = (
        PANEL_CSS
        + """
    JobScreen #detail-panel { height: auto; }
    JobScreen #job-detail { height: auto; padding: 0 1; }
    JobScreen #history-panel { height: 1fr; }
    JobScreen #lateness-row { height: 1; padding: 0 1; }
    JobScreen #lateness-row Label { width: auto; padding-right: 1; }
    JobScreen #lateness-row .bold { text-style: bold; padding-right: 0; }
    JobScreen #lateness-now { padding-left: 1; }
    JobScreen #lateness { width: 1fr; height: 1; }
    """
    )
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="job.back")]

    def __init__(self, job: Job, connection: Connection, clock: Clock) -> None:
        super().__init__()
        self.job = job
        self.connection = connection
        self.clock = clock

    def compose(self) -> ComposeResult:
        yield ClusterBar(self.connection, self.clock)
        with Vertical(id="detail-panel", classes="panel"):
            yield Static(self._detail(), id="job-detail")
            yield JobSummary(self.job, self.clock, id="job-summary")
            with Horizontal(id="lateness-row"):
                yield Label(f"{'lateness':>10} ", classes="bold")
                yield Sparkline([], summary_function=max, id="lateness")
                yield Label("-", id="lateness-now")
        with Vertical(id="history-panel", classes="panel"):
            yield Label("", classes="panel-error -empty")
            yield ExecutionTable(id="history")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-panel").border_title = f"Job {self.job.id}"
        self.query_one("#history-panel").border_title = "History (newest first)"
        self.query_one(ExecutionTable).focus()

    def show_job(self, job: Job) -> None:
        self.job = job
        self.query_one("#job-detail", Static).update(self._detail())

    def show_history(self, executions: Sequence[Execution]) -> None:
        self.query_one(ExecutionTable).show(executions, self.clock())
        points = lateness(executions)
        self.query_one("#lateness", Sparkline).data = points
        summary = (
            f"last {fmt.seconds(points[-1])} · max {fmt.seconds(max(points))}"
            f" · {len(points)} runs (slot to result)"
            if points
            else "no finished runs yet"
        )
        self.query_one("#lateness-now", Label).update(summary)

    def show_error(self, error: str) -> None:
        label = self.query_one("#history-panel .panel-error", Label)
        label.update(error)
        label.set_class(not error, "-empty")

    def _detail(self) -> Text:
        job, now = self.job, self.clock()
        rows = [
            ("spec", job.spec),
            ("timezone", job.timezone),
            ("callback", job.callback_url),
            ("data", printable(job.data) or "-"),
            ("status", job.status + (f" — {job.status_note}" if job.status_note else "")),
            (
                "next run",
                "-" if job.status != "active" else fmt.clock_time(job.next_run_at, now) + " UTC",
            ),
            ("policies", " ".join(f"{k}={v}" for k, v in job.policies) or "defaults"),
        ]
        text = Text()
        for name, value in rows:
            text.append(f"{name:>10}  ", style="bold")
            text.append(f"{value}\n")
        text.rstrip()
        return text


MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 90; height: auto; max-height: 80%; border: thick $primary;
                    background: $surface; padding: 0 1; }}
{name} .title {{ text-style: bold; margin-bottom: 1; }}
{name} .hint {{ color: $text-muted; margin-top: 1; }}
"""


class NoteScreen(ModalScreen[str | None]):
    """Pause or resume with a note (shown as the job's status_note): enter
    confirms (a blank note is none), escape cancels. Dismisses with the note
    ('' for none) or None."""

    DEFAULT_CSS = MODAL_CSS.format(name="NoteScreen")
    BINDINGS = [Binding("escape", "close", "Close", id="note.close")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, classes="title")
            yield Input(placeholder="note (optional): why", id="note")
            yield Label("enter: confirm   esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#note", Input).focus()

    @on(Input.Submitted)
    def _confirmed(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = (
        MODAL_CSS.format(name="ConfirmScreen")
        + """
    ConfirmScreen #buttons { height: auto; margin-top: 1; align-horizontal: right; }
    ConfirmScreen #buttons Button { margin-left: 1; }
    """
    )
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, classes="title")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


ALL_PROJECTS = "all"
NEW_PROJECT = "new"


class ProjectsScreen(ModalScreen[str | int | None]):
    """The projects: pick one to filter the jobs by, all of them, or create one.
    Dismisses with a project id, ``ALL_PROJECTS``, ``NEW_PROJECT`` or None."""

    DEFAULT_CSS = (
        MODAL_CSS.format(name="ProjectsScreen")
        + """
    ProjectsScreen DataTable { height: auto; max-height: 20; }
    """
    )
    BINDINGS = [
        Binding("a", "pick_all", "All projects", id="projects.all"),
        Binding("n", "new_project", "New project", id="projects.new"),
        Binding("escape", "close", "Close", id="projects.close"),
    ]

    def __init__(self, projects: Sequence[Project]) -> None:
        super().__init__()
        self.projects = projects

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Projects — enter filters the jobs by one", classes="title")
            yield DataTable[Any](id="projects", cursor_type="row")
            yield Label("a: all projects   n: new project   esc: close", classes="hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("id", key="id")
        table.add_column("name", key="name")
        table.add_column("description", key="description")
        self.show(self.projects)
        table.focus()

    def show(self, projects: Sequence[Project]) -> None:
        self.projects = projects
        rows = [(str(p.id), [str(p.id), p.name, p.description]) for p in projects]
        sync_rows(self.query_one(DataTable), rows)

    @on(DataTable.RowSelected)
    def _picked(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        self.dismiss(int(key) if key else None)

    def action_pick_all(self) -> None:
        self.dismiss(ALL_PROJECTS)

    def action_new_project(self) -> None:
        self.dismiss(NEW_PROJECT)

    def action_close(self) -> None:
        self.dismiss(None)


class SwitchNodeScreen(ModalScreen[str | None]):
    """Pick a member, or type any node's URL; dismisses with the URL."""

    DEFAULT_CSS = (
        MODAL_CSS.format(name="SwitchNodeScreen")
        + """
    SwitchNodeScreen OptionList { height: auto; max-height: 12; }
    """
    )
    BINDINGS = [Binding("escape", "close", "Close", id="switch.close")]

    def __init__(self, view: ClusterView | None, current_url: str) -> None:
        super().__init__()
        self.view = view
        self.current_url = current_url

    def compose(self) -> ComposeResult:
        members = self.view.members if self.view else ()
        options = [
            Option(
                f"node {m.node_id}  {m.address}  {m.role}"
                + ("" if m.reachable else "  (unreachable)")
                + ("  ← connected" if m.address == self.current_url else ""),
                id=m.address,
            )
            for m in members
        ]
        with Vertical():
            yield Label(f"Switch node (connected: {self.current_url})", classes="title")
            yield OptionList(*options, id="members")
            yield Input(placeholder="or another node's URL, e.g. http://127.0.0.1:9092", id="url")

    def on_mount(self) -> None:
        members = self.query_one(OptionList)
        (members if members.option_count else self.query_one(Input)).focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())

    def action_close(self) -> None:
        self.dismiss(None)


class CredentialsScreen(ModalScreen[SignIn | None]):
    """The node refused the console's credentials (401): ask for others, a client
    key pair or the operator's username and password. Dismisses with them, or
    None (the console then shows the refusal and asks again on the next switch)."""

    DEFAULT_CSS = MODAL_CSS.format(name="CredentialsScreen")
    BINDINGS = [
        Binding("escape", "close", "Close", id="credentials.close"),
        Binding("ctrl+s", "sign_in", "Sign in", id="credentials.sign-in"),
    ]

    def __init__(self, url: str, reason: str) -> None:
        super().__init__()
        self.url = url
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"{self.url} refused the credentials: {self.reason}", classes="title")
            yield Input(placeholder="api key", id="api-key")
            yield Input(placeholder="api secret", password=True, id="api-secret")
            yield Label("or the operator's", classes="hint")
            yield Input(placeholder="username", id="username")
            yield Input(placeholder="password", password=True, id="password")
            yield Label("", id="credentials-error", classes="hint")
            yield Label("enter / ctrl+s: sign in   esc: close", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#api-key", Input).focus()

    def _given(self) -> SignIn:
        def value(field: str) -> str:
            return self.query_one(f"#{field}", Input).value.strip()

        return SignIn(value("api-key"), value("api-secret"), value("username"), value("password"))

    @on(Input.Submitted)
    def action_sign_in(self) -> None:
        given = self._given()
        if given.complete:
            self.dismiss(given)
        else:
            self.query_one("#credentials-error", Label).update(
                "give an api key and its secret, or a username and its password"
            )

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key, generated from the bindings (``rows``): none is written twice."""

    DEFAULT_CSS = (
        MODAL_CSS.format(name="HelpScreen")
        + """
    HelpScreen DataTable { height: auto; max-height: 34; }
    """
    )
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, rows: Iterable[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = list(rows)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Keys (ctrl+p opens the command palette)", classes="title")
            yield DataTable[Any](id="keys", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "does", "where")
        for row in self.rows:
            table.add_row(*row)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
