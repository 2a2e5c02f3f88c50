"""The console app, built by ``create_console(source)`` (the command and the tests).

Every second a tick starts one thread worker per view (cluster, jobs, log, the
open job's history; projects every fifth tick), unless that view's previous
fetch is still in flight, so a slow or dead node never piles up requests or
freezes the UI. Workers only call the source and post a message; the handlers
below are the only code that touches widgets. Failures are shown where the data
would be (the bar turns red and counts retries; panels keep their last rows,
dimmed and marked with their age once they are older than one refresh).

What is shown is the connected node's, never another's: each answer carries the
generation of the connection it was asked on, and one asked before a switch is
dropped; a switch clears the panels first. A 401 asks for credentials. When the
connected node stops answering, the console reads from another known member
(``failover.Failover``) and the bar says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input

from scheduler0.client import Unreachable
from scheduler0.console.failover import FAILOVER_AFTER_FAILURES, Failover, Freshness
from scheduler0.console.forms import BackfillForm, FormScreen, JobForm, ProjectForm
from scheduler0.console.history import ClusterHistory
from scheduler0.console.job_summary import NEXT_RUNS, JobSummary
from scheduler0.console.messages import (
    ClusterRefreshed,
    Fetched,
    FetchFailed,
    HistoryRefreshed,
    JobActionFailed,
    JobActionSucceeded,
    JobsRefreshed,
    LogRefreshed,
    ProjectsRefreshed,
    RunsPreviewed,
)
from scheduler0.console.screens import (
    ALL_PROJECTS,
    NEW_PROJECT,
    ConfirmScreen,
    CredentialsScreen,
    HelpScreen,
    JobScreen,
    MainScreen,
    NoteScreen,
    ProjectsScreen,
    SwitchNodeScreen,
)
from scheduler0.console.source import (
    EXECUTION_STATES,
    EXECUTION_TRIGGERS,
    ConsoleSource,
    Job,
    JobPage,
    Project,
    SignIn,
)
from scheduler0.console.widgets import (
    ActivityPanel,
    Clock,
    ClusterBar,
    Connection,
    ExecutionTable,
    JobsTable,
    LogTable,
    NodesTable,
    SortableTable,
    TableSorted,
    selected_key,
)
from scheduler0.errors import Scheduler0Error, Unauthorized

REFRESH_SECONDS = 1.0
PROJECTS_EVERY_TICKS = 5
LOG_PAGE_ROWS = 50
"""Rows of the execution log per page (``<``/``>`` page through older ones)."""
JOB_VERBS = ("pause", "resume", "run", "delete")


class ConsoleApp(App[None]):
    TITLE = "scheduler0 console"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("r", "refresh", "Refresh now", id="app.refresh", show=False),
        Binding("s", "switch_node", "Switch node", id="app.switch-node"),
        Binding("f", "projects", "Projects", id="jobs.projects"),
        Binding("slash", "filter_jobs", "Search", id="jobs.filter"),
        Binding("n", "new_job", "New job", id="jobs.new"),
        Binding("o", "open_job", "Open job (or enter)", id="jobs.open", show=False),
        Binding("e", "edit_job", "Edit", id="jobs.edit"),
        Binding("p", "job_verb('pause')", "Pause", id="jobs.pause"),
        Binding("u", "job_verb('resume')", "Resume", id="jobs.resume"),
        Binding("P", "job_note('pause')", "Pause with a note", id="jobs.pause-note", show=False),
        Binding("U", "job_note('resume')", "Resume with a note", id="jobs.resume-note", show=False),
        Binding("x", "job_verb('run')", "Run now", id="jobs.run"),
        Binding("b", "backfill_job", "Backfill", id="jobs.backfill", show=False),
        Binding("d", "job_verb('delete')", "Delete", id="jobs.delete"),
        Binding("right_square_bracket", "jobs_page(1)", "Jobs: next page", id="jobs.next-page"),
        Binding(
            "left_square_bracket", "jobs_page(-1)", "Jobs: previous page", id="jobs.previous-page"
        ),
        Binding("t", "cycle_log_state", "Log: state", id="log.state", show=False),
        Binding("g", "cycle_log_trigger", "Log: trigger", id="log.trigger", show=False),
        Binding("j", "toggle_log_job", "Log: this job", id="log.job", show=False),
        Binding("greater_than_sign", "log_page(1)", "Log: older rows", id="log.older", show=False),
        Binding("less_than_sign", "log_page(-1)", "Log: newer rows", id="log.newer", show=False),
    ]

    def __init__(
        self,
        source: ConsoleSource,
        *,
        clock: Clock = time.time,
        refresh_seconds: float | None = REFRESH_SECONDS,
    ) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.connection = Connection(source.url)
        self.projects: dict[int, Project] = {}
        self.jobs: dict[int, Job] = {}
        self.jobs_total = 0
        self.jobs_page = JobPage((), 0)
        self.jobs_offset = 0
        """Where the page of jobs asked for starts among those found."""
        self.project_filter: int | None = None
        self.text_filter = ""
        self.log_job: int | None = None
        self.log_state: str | None = None
        self.log_trigger: str | None = None
        self.log_offset = 0
        """Newer rows skipped: 0 is the live log, more is an older page."""
        self.ticks = 0
        self._in_flight: set[str] = set()
        self.generation = 0
        """Bumped whenever the node or the credentials change: older answers are dropped."""
        self.failover = Failover()
        self.freshness = Freshness()
        self.history = ClusterHistory()
        self._asking_credentials = False
        self._credentials_declined = False
        self.main = MainScreen(self.connection, clock)

    # -- lifecycle and polling ----------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def on_mount(self) -> None:
        self.call_after_refresh(self._start)  # once the main screen is composed

    def _start(self) -> None:
        self._retitle()
        self.tick()
        if self.refresh_seconds:
            self.set_interval(self.refresh_seconds, self.tick)

    def tick(self) -> None:
        """Start the fetches that are due and not already in flight."""
        if self.ticks % PROJECTS_EVERY_TICKS == 0:
            self._fetch("projects", lambda: ProjectsRefreshed(self.source.projects()))
        self.ticks += 1
        self._fetch("cluster", lambda: ClusterRefreshed(self.source.cluster()))
        self.refresh_jobs()
        self._fetch_log()
        screen = self.top_screen
        if isinstance(screen, JobScreen):
            job_id = screen.job.id
            self._fetch(
                "history",
                lambda: HistoryRefreshed(job_id, self.source.executions(job_id, None)),
            )
            self._feed_job_page(screen)
        self._repaint_bars()
        self._mark_stale()

    def _fetch(self, what: str, call: Callable[[], Fetched]) -> None:
        if what not in self._in_flight:
            self._in_flight.add(what)
            self._fetch_in_thread(what, call)

    @work(thread=True, exit_on_error=False, group="fetch")
    def _fetch_in_thread(self, what: str, call: Callable[[], Fetched]) -> None:
        generation = self.generation
        message: Fetched | FetchFailed
        try:
            message = call()
        except Scheduler0Error as exc:
            message = FetchFailed(what, exc)
        except Exception as exc:  # a bad answer must not take the console down
            message = FetchFailed(what, Scheduler0Error(f"{type(exc).__name__}: {exc}"))
        message.generation = generation
        self.post_message(message)

    def _landed(self, what: str, message: Fetched | FetchFailed) -> bool:
        """The fetch is no longer in flight; whether its answer is still wanted
        (asked of the node and credentials in use now)."""
        self._in_flight.discard(what)
        return message.generation == self.generation

    # -- fetch results --------------------------------------------------------

    def on_cluster_refreshed(self, message: ClusterRefreshed) -> None:
        if not self._landed("cluster", message):
            return
        now = self.clock()
        self.failover.learn(message.view)
        self.failover.misses = 0
        self.history.add(message.view, now)
        self.freshness.landed("nodes", now)
        c = self.connection
        c.view, c.fetched_at, c.failures, c.error, c.unreachable = (
            message.view,
            self.clock(),
            0,
            None,
            False,
        )
        try:
            self._repaint_bars()
            self.main.query_one(NodesTable).show(message.view, now)
            self.main.query_one(ActivityPanel).show(message.view, self.history)
            self.main.show_error("nodes", "")
            self.main.mark_stale("nodes", None)
        except NoMatches:  # the app is closing: its widgets are gone, a fetch landed
            return

    @property
    def top_screen(self) -> Screen[object] | None:
        """The active screen, or None while the app closes: its screen stack is
        empty then, and a refresh still in flight may land."""
        return self.screen_stack[-1] if self.screen_stack else None

    def on_projects_refreshed(self, message: ProjectsRefreshed) -> None:
        if not self._landed("projects", message):
            return
        self.projects = {p.id: p for p in message.projects}
        screen = self.top_screen
        if isinstance(screen, ProjectsScreen):
            screen.show(message.projects)

    def on_jobs_refreshed(self, message: JobsRefreshed) -> None:
        if not self._landed("jobs", message):
            return
        asked = (message.project, message.text, message.offset)
        if asked != (self.project_filter, self.text_filter, self.jobs_offset):
            self.refresh_jobs()  # the filter or the page changed while this was in flight
            return
        page = message.page
        if not page.jobs and page.total and self.jobs_offset >= page.total:
            self.jobs_offset = page.last_page_offset  # jobs went: back to the last page
            self.refresh_jobs()
            return
        self.freshness.landed("jobs", self.clock())
        self.main.mark_stale("jobs", None)
        self.jobs = {job.id: job for job in message.page.jobs}
        self.jobs_total = message.page.total
        self.jobs_page = page
        try:
            table = self.main.query_one(JobsTable)
        except NoMatches:  # the app is closing: its widgets are gone, a fetch landed
            return
        table.show(message.page.jobs, self.projects, self.clock())
        self.main.show_error("jobs", "")
        self._retitle()
        for screen in self.screen_stack:
            if isinstance(screen, JobScreen) and screen.job.id in self.jobs:
                screen.show_job(self.jobs[screen.job.id])
                self._feed_job_page(screen)

    def _feed_job_page(self, screen: JobScreen) -> None:
        """The job page's summary: the job and its project's name, and its next
        runs fetched again whenever its spec or timezone changed."""
        job = screen.job
        try:
            summary = screen.query_one(JobSummary)
        except NoMatches:  # not composed yet: the next tick feeds it
            return
        summary.show_job(job, self.projects.get(job.project_id))
        wanted = summary.wanted_runs()
        if wanted is not None:
            spec, timezone = wanted
            self._fetch(
                "runs",
                lambda: RunsPreviewed(
                    job.id, spec, timezone, self.source.preview_schedule(spec, timezone, NEXT_RUNS)
                ),
            )

    def on_runs_previewed(self, message: RunsPreviewed) -> None:
        if not self._landed("runs", message):
            return
        for screen in self.screen_stack:
            if isinstance(screen, JobScreen) and screen.job.id == message.job_id:
                summary = screen.query_one(JobSummary)
                summary.show_runs(message.spec, message.timezone, message.runs)

    def on_log_refreshed(self, message: LogRefreshed) -> None:
        if not self._landed("log", message):
            return
        asked = (message.job, message.state, message.trigger, message.offset)
        if asked != (self.log_job, self.log_state, self.log_trigger, self.log_offset):
            self._fetch_log()
            return
        if not message.executions and self.log_offset:
            self.log_offset = max(0, self.log_offset - LOG_PAGE_ROWS)  # past the oldest row
            self.notify("no older rows")
            self._retitle()
            self._fetch_log()
            return
        try:
            log = self.main.query_one("#log", LogTable)
        except NoMatches:  # the app is closing: its widgets are gone, a fetch landed
            return
        self.freshness.landed("log", self.clock())
        log.show(message.executions, self.clock())
        self.main.show_error("log", "")
        self.main.mark_stale("log", None)

    def on_history_refreshed(self, message: HistoryRefreshed) -> None:
        if not self._landed("history", message):
            return
        for screen in self.screen_stack:
            if isinstance(screen, JobScreen) and screen.job.id == message.job_id:
                screen.show_history(message.executions)
                screen.query_one(JobSummary).show_history(message.executions)
                screen.show_error("")

    def on_fetch_failed(self, message: FetchFailed) -> None:
        if not self._landed(message.what, message):
            return
        error = message.error.message or type(message.error).__name__
        if isinstance(message.error, Unauthorized):
            self._ask_credentials(error)
        if message.what == "cluster":
            c = self.connection
            c.failures += 1
            c.unreachable = isinstance(message.error, Unreachable)
            c.error = error
            self._repaint_bars()
            self.main.show_error("nodes", f"could not refresh: {error}")
            if c.unreachable:
                if c.view is not None:
                    try:
                        self.main.query_one(NodesTable).mark_unreachable(c.view.node_id)
                    except NoMatches:  # the app is closing: its widgets are gone
                        return
                self.failover.misses += 1
                if self.failover.misses >= FAILOVER_AFTER_FAILURES:
                    self._fail_over()
        elif message.what in ("jobs", "log"):
            self.main.show_error(message.what, f"could not refresh: {error}")
        elif message.what == "history":
            for screen in self.screen_stack:
                if isinstance(screen, JobScreen):
                    screen.show_error(f"could not refresh: {error}")
        elif message.what == "runs":
            for screen in self.screen_stack:
                if isinstance(screen, JobScreen):
                    summary = screen.query_one(JobSummary)
                    job = screen.job
                    summary.show_runs(job.spec, job.timezone, [], error)

    def _repaint_bars(self) -> None:
        for screen in self.screen_stack:
            for bar in screen.query(ClusterBar):
                bar.changed()

    def _mark_stale(self) -> None:
        """Dim and date each panel whose rows are older than one refresh."""
        now = self.clock()
        for panel in ("nodes", "jobs", "log"):
            age = self.freshness.stale_age(panel, now, self.refresh_seconds)
            if age is not None:
                self.main.mark_stale(panel, age)

    # -- which node, with which credentials -----------------------------------

    def _fail_over(self) -> None:
        """The connected node stopped answering: read from the next known member.
        Its rows stay, marked stale, until the new node's land."""
        gone = self.source.url
        candidate = self.failover.candidate(gone)
        if candidate is None:
            return  # no other member known: keep retrying this one
        self._connect(candidate, forget=False)
        self.connection.moved_from = gone

    def _connect(self, url: str, *, forget: bool) -> None:
        """Talk to ``url`` from now on; ``forget``: clear every panel first, so
        nothing of the previous node stays on screen."""
        self.source.switch(url)
        self.generation += 1
        self.failover.misses = 0
        c = self.connection
        c.url, c.view, c.fetched_at, c.moved_from = self.source.url, None, None, None
        if forget:  # a failover keeps counting the failures: the cluster is the same
            c.failures, c.error, c.unreachable = 0, None, False
            self._forget_node()
        self._repaint_bars()
        self.ticks = 0  # a first tick: the projects too
        self.tick()

    def _forget_node(self) -> None:
        self.connection.view = None
        self.jobs, self.jobs_total, self.projects = {}, 0, {}
        self.jobs_page, self.jobs_offset, self.log_offset = JobPage((), 0), 0, 0
        self.freshness.forget()
        self.history.clear()
        self._credentials_declined = False
        while isinstance(self.top_screen, JobScreen):
            self.pop_screen()
        for selector in ("#nodes", "#jobs", "#log"):
            self.main.query_one(selector, DataTable).clear()
        self.main.query_one(ActivityPanel).clear()
        for panel in ("nodes", "jobs", "log"):
            self.main.show_error(panel, "")
            self.main.mark_stale(panel, None)
        self._retitle()

    def _ask_credentials(self, reason: str) -> None:
        if self._asking_credentials or self._credentials_declined:
            return
        self._asking_credentials = True
        self.push_screen(CredentialsScreen(self.source.url, reason), self._signed_in)

    def _signed_in(self, credentials: SignIn | None) -> None:
        self._asking_credentials = False
        if credentials is None:
            self._credentials_declined = True  # asked again after the next switch
            return
        self.source.sign_in(credentials)
        self.generation += 1
        self.connection.failures, self.connection.error = 0, None
        self._repaint_bars()
        self.ticks = 0  # a first tick: the projects too
        self.tick()

    # -- selection ------------------------------------------------------------

    def current_job(self) -> Job | None:
        """The job the job keys act on: the open job page's, else the table's cursor."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, JobScreen):
                return screen.job
        key = selected_key(self.main.query_one(JobsTable))
        return self.jobs.get(int(key)) if key else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "quit" or action not in _OWN_ACTIONS:
            return True
        if isinstance(self.screen, ModalScreen):
            return False  # a dialog is open: its own keys only
        on_job_page = isinstance(self.screen, JobScreen)
        if on_job_page and action in (
            "projects",
            "filter_jobs",
            "new_job",
            "open_job",
            "jobs_page",
            "log_page",
        ):
            return False
        if action in ("edit_job", "job_verb", "job_note", "open_job", "toggle_log_job"):
            return None if self.current_job() is None else True
        return True

    # -- actions: refresh, help, node ---------------------------------------

    def action_refresh(self) -> None:
        self.tick()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_rows()))

    def help_rows(self) -> Iterator[tuple[str, str, str]]:
        """(key, description, where) for every binding the console declares."""
        places: list[tuple[str, list[Any]]] = [
            ("console", [*ConsoleApp.BINDINGS, *App.BINDINGS, *Screen.BINDINGS]),
            ("jobs list", MainScreen.BINDINGS),
            ("jobs, log and history tables", SortableTable.BINDINGS),
            ("job page", JobScreen.BINDINGS),
            ("forms", FormScreen.BINDINGS),
            ("confirmations", ConfirmScreen.BINDINGS),
            ("pause/resume note", NoteScreen.BINDINGS),
            ("projects", ProjectsScreen.BINDINGS),
            ("execution log", LogTable.BINDINGS),
            ("switch node", SwitchNodeScreen.BINDINGS),
            ("credentials", CredentialsScreen.BINDINGS),
            ("this help", HelpScreen.BINDINGS),
        ]
        for where, bindings in places:
            for binding in bindings:
                if isinstance(binding, Binding) and binding.description:
                    keys = [replace(binding, key=k.strip()) for k in binding.key.split(",")]
                    shown = " / ".join(self.get_key_display(k) for k in keys)
                    yield shown, binding.description, where
        yield self.get_key_display(Binding(self.COMMAND_PALETTE_BINDING, "")), "Commands", "all"

    def get_system_commands(self, screen: Screen[Any]) -> Iterator[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and binding.action not in ("quit", "help"):
                key = self.get_key_display(binding)
                run = partial(self.run_action, binding.action)
                yield SystemCommand(binding.description, f"key: {key}", run)

    def action_switch_node(self) -> None:
        # The members the console knows, even when the node in use refuses it.
        screen = SwitchNodeScreen(self.connection.view or self.failover.last_view, self.source.url)
        self.push_screen(screen, self._switch_to)

    def _switch_to(self, url: str | None) -> None:
        if not url:
            return
        try:
            self._connect(url, forget=True)
        except Scheduler0Error as exc:
            self.notify(exc.message, title="cannot switch", severity="error")

    # -- actions: projects and filters ----------------------------------------

    def action_projects(self) -> None:
        self._fetch("projects", lambda: ProjectsRefreshed(self.source.projects()))
        self.push_screen(ProjectsScreen(list(self.projects.values())), self._project_picked)

    def _project_picked(self, choice: str | int | None) -> None:
        if choice == NEW_PROJECT:
            self.push_screen(ProjectForm(self.source), self._project_created)
            return
        if choice is None:
            return
        self.project_filter = choice if isinstance(choice, int) else None
        self.jobs_offset = 0
        assert choice == ALL_PROJECTS or isinstance(choice, int)
        self._retitle()
        self.refresh_jobs()

    def _project_created(self, project: Project | None) -> None:
        if project is None:
            return
        self.projects[project.id] = project
        self.notify(f"project {project.id} {project.name} created")
        self._project_picked(project.id)
        self._fetch("projects", lambda: ProjectsRefreshed(self.source.projects()))

    def action_filter_jobs(self) -> None:
        box = self.main.query_one("#job-filter", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#job-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value
        self.jobs_offset = 0
        self._retitle()
        self.refresh_jobs()

    @on(Input.Submitted, "#job-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.remove_class("-shown")
        self.main.query_one(JobsTable).focus()

    def refresh_jobs(self) -> None:
        project, text, offset = self.project_filter, self.text_filter, self.jobs_offset
        self._fetch(
            "jobs",
            lambda: JobsRefreshed(self.source.jobs(project, text, offset), project, text, offset),
        )

    def _fetch_log(self) -> None:
        job, state, trigger, offset = (
            self.log_job,
            self.log_state,
            self.log_trigger,
            self.log_offset,
        )

        def fetch() -> LogRefreshed:
            rows = self.source.executions(job, state, LOG_PAGE_ROWS, trigger=trigger, offset=offset)
            return LogRefreshed(rows, job, state, trigger, offset)

        self._fetch("log", fetch)

    def action_jobs_page(self, step: int) -> None:
        """``]``/``[``: the next or previous page of the jobs found, from the node.
        Counted from the page asked for, so a held key moves on before each lands."""
        page = self.jobs_page
        if step > 0 and self.jobs_offset + page.size >= page.total:
            self.notify(f"{page.span}: this is the last page")
            return
        if step < 0 and self.jobs_offset == 0:
            self.notify(f"{page.span}: this is the first page")
            return
        self.jobs_offset = max(0, self.jobs_offset + step * page.size)
        self._retitle()
        self.refresh_jobs()

    def action_log_page(self, step: int) -> None:
        """``>``/``<``: older or newer rows of the log, from the node; back on
        the newest page it is live again."""
        if step < 0 and self.log_offset == 0:
            return
        self.log_offset = max(0, self.log_offset + step * LOG_PAGE_ROWS)
        self._retitle()
        self._fetch_log()

    def action_cycle_log_trigger(self) -> None:
        triggers: list[str | None] = [None, *EXECUTION_TRIGGERS]
        self.log_trigger = triggers[(triggers.index(self.log_trigger) + 1) % len(triggers)]
        self.log_offset = 0
        self._retitle()
        self._fetch_log()

    @on(TableSorted)
    def _table_sorted(self, message: TableSorted) -> None:
        self._retitle()
        for screen in self.screen_stack:
            if isinstance(screen, JobScreen):
                order = screen.query_one(ExecutionTable).sort_label()
                panel = screen.query_one("#history-panel")
                panel.border_title = f"History — {order}" if order else "History (newest first)"

    def action_cycle_log_state(self) -> None:
        states: list[str | None] = [None, *EXECUTION_STATES]
        self.log_state = states[(states.index(self.log_state) + 1) % len(states)]
        self.log_offset = 0
        self._retitle()
        self._fetch_log()

    def action_toggle_log_job(self) -> None:
        job = self.current_job()
        self.log_job = None if self.log_job is not None or job is None else job.id
        self.log_offset = 0
        self._retitle()
        self._fetch_log()

    def _retitle(self) -> None:
        project = self.projects.get(self.project_filter) if self.project_filter else None
        scope = "all projects"
        if self.project_filter is not None:
            scope = f"project {self.project_filter}" + (f" {project.name}" if project else "")
        text = f' · matching "{self.text_filter}"' if self.text_filter else ""
        page = self.jobs_page
        count = f" · {page.span}"
        if page.offset != self.jobs_offset:
            count += f" (loading from {self.jobs_offset + 1})"
        elif page.total > len(page.jobs):
            count += " ([ ]: pages)"
        order = self.main.query_one(JobsTable).sort_label()
        self.main.query_one("#jobs-panel").border_title = f"Jobs — {scope}{text}{count}" + (
            f" · {order}" if order else ""
        )
        job = f"job {self.log_job}" if self.log_job is not None else "all jobs"
        state = self.log_state or "all states"
        trigger = self.log_trigger or "all triggers"
        rows = (
            f"rows {self.log_offset + 1}-{self.log_offset + LOG_PAGE_ROWS}, older (<: newer)"
            if self.log_offset
            else "newest first"
        )
        log_order = self.main.query_one(LogTable).sort_label()
        self.main.query_one("#log-panel").border_title = (
            f"Executions — {job} · {state} · {trigger} · {rows}"
            + (f" · {log_order}" if log_order else "")
            + " (t: state, g: trigger, j: this job, >: older)"
        )

    # -- actions: jobs --------------------------------------------------------

    @on(DataTable.RowSelected, "#jobs")
    def action_open_job(self) -> None:
        job = self.current_job()
        if job is not None and not isinstance(self.screen, JobScreen):
            self.push_screen(JobScreen(job, self.connection, self.clock))
            self.call_after_refresh(self.tick)

    def action_new_job(self) -> None:
        default = self.project_filter
        if default is None and len(self.projects) == 1:
            default = next(iter(self.projects))
        form = JobForm(self.source, list(self.projects.values()), project_id=default)
        self.push_screen(form, self._job_saved)

    def action_edit_job(self) -> None:
        job = self.current_job()
        if job is not None:
            form = JobForm(self.source, list(self.projects.values()), job=job)
            self.push_screen(form, self._job_saved)

    def action_backfill_job(self) -> None:
        job = self.current_job()
        if job is not None:
            now = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.push_screen(BackfillForm(self.source, job, now), partial(self._backfilled, job))

    def _backfilled(self, job: Job, answer: dict[str, Any] | None) -> None:
        if answer is not None:
            self.notify(
                f"job {job.id}: {answer.get('queued', 0)} of {answer.get('requested', 0)}"
                f" slot(s) queued ({answer.get('already_done', 0)} already run)"
            )
            self.refresh_jobs()

    def _job_saved(self, job: Job | None) -> None:
        if job is not None:
            self.notify(f"job {job.id} saved ({job.spec})")
            self.refresh_jobs()

    def action_job_verb(self, verb: str) -> None:
        job = self.current_job()
        if job is None or verb not in JOB_VERBS:
            return
        question = f"{verb.capitalize()} job {job.id} ({job.spec} → {job.callback_url})?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._job_action(verb, job.id)

        self.push_screen(ConfirmScreen(question), answered)

    def action_job_note(self, verb: str) -> None:
        """Pause or resume after asking for a note (the job's status_note)."""
        job = self.current_job()
        if job is None or verb not in ("pause", "resume"):
            return
        question = f"{verb.capitalize()} job {job.id} ({job.spec} → {job.callback_url})"

        def answered(note: str | None) -> None:
            if note is not None:
                self._job_action(verb, job.id, note or None)

        self.push_screen(NoteScreen(question), answered)

    @work(thread=True, exit_on_error=False, group="job-actions")
    def _job_action(self, verb: str, job_id: int, note: str | None = None) -> None:
        calls: dict[str, Callable[[int], Job | None]] = {
            "pause": lambda job_id: self.source.pause_job(job_id, note),
            "resume": lambda job_id: self.source.resume_job(job_id, note),
            "run": self.source.run_job,
            "delete": self.source.delete_job,
        }
        try:
            job = calls[verb](job_id)
        except Scheduler0Error as exc:
            self.post_message(JobActionFailed(verb, job_id, exc))
        except Exception as exc:  # a bad answer must not take the console down
            error = Scheduler0Error(f"{type(exc).__name__}: {exc}")
            self.post_message(JobActionFailed(verb, job_id, error))
        else:
            self.post_message(JobActionSucceeded(verb, job_id, job))

    def on_job_action_succeeded(self, message: JobActionSucceeded) -> None:
        self.notify(f"job {message.job_id}: {message.verb} done")
        if message.verb == "delete":
            while isinstance(self.screen, JobScreen) and self.screen.job.id == message.job_id:
                self.pop_screen()
        self.refresh_jobs()

    def on_job_action_failed(self, message: JobActionFailed) -> None:
        text = f"{message.verb} job {message.job_id} failed: {message.error.message}"
        self.notify(text, severity="error")
        self.main.show_error("jobs", text)


_OWN_ACTIONS = {b.action.split("(")[0] for b in ConsoleApp.BINDINGS if isinstance(b, Binding)}


def create_console(
    source: ConsoleSource,
    *,
    clock: Clock = time.time,
    refresh_seconds: float | None = REFRESH_SECONDS,
) -> ConsoleApp:
    """The console over ``source``. Tests pass a fake source and a frozen ``clock``;
    ``refresh_seconds=None`` turns the periodic refresh off (``r`` still refreshes)."""
    return ConsoleApp(source, clock=clock, refresh_seconds=refresh_seconds)
