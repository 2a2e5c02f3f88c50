"""The console's screens, pinned: a fake source with fixed data, a fixed terminal
size and a frozen clock, so each SVG is the same on every run. Review the SVGs
under ``tests/__snapshots__/`` after ``pytest --snapshot-update``.

Also here, fast and without a node: keyed rows keep the cursor across
refreshes, and a failing source is shown in place without stopping the app.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.pilot import Pilot
from textual.widgets import (
    Collapsible,
    DataTable,
    Input,
    Label,
    OptionList,
    Select,
    Sparkline,
    Static,
)

from scheduler0.client import Unreachable
from scheduler0.console.app import ConsoleApp, create_console
from scheduler0.console.forms import BackfillForm, JobForm, ProjectForm
from scheduler0.console.job_summary import JobSummary
from scheduler0.console.screens import (
    CredentialsScreen,
    JobScreen,
    NoteScreen,
    ProjectsScreen,
    SwitchNodeScreen,
)
from scheduler0.console.source import (
    ClusterView,
    Execution,
    Job,
    JobCounters,
    JobDraft,
    JobPage,
    Member,
    Project,
    SignIn,
)
from scheduler0.console.widgets import ClusterBar, JobsTable, NodeActivity
from scheduler0.errors import FieldError, NotFound, Unauthorized, ValidationFailed

SIZE = (140, 45)
NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC).timestamp()


def frozen_clock() -> float:
    return NOW


def iso(offset: float) -> str:
    return datetime.fromtimestamp(NOW + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


JOB_2_POLICIES = (
    ("overlap", "skip"),
    ("catchup", "all"),
    ("retry.attempts", "3"),
    ("retry.initial_seconds", "0.5"),
    ("end_at", "2026-12-31T00:00:00Z"),
    ("max_runs", "100"),
)


class FakeSource:
    """A ``ConsoleSource`` over fixed, in-memory data; ``cluster_error`` makes the
    cluster call fail as a dead node does; ``refused[url]`` makes every read of
    the node at ``url`` fail (a dead member, or one refusing the credentials)."""

    def __init__(self) -> None:
        self.url = "http://127.0.0.1:9091"
        self.lock = threading.Lock()
        self.cluster_error: Exception | None = None
        self.refused: dict[str, Exception] = {}
        self.calls: list[str] = []
        self.drafts: list[JobDraft] = []
        self.page_size: int | None = None
        """Jobs per page as a node pages them; None: every job on one page."""
        self.members = (
            Member(1, "http://127.0.0.1:9091", "leader", True, False, None, 342, 1204, 3, 1, 0.04),
            Member(2, "http://127.0.0.1:9092", "follower", True, False, NOW - 0.3, 341, 1187, 0, 0),
            Member(3, "http://127.0.0.1:9093", "follower", False, error="connect refused"),
        )
        self.project_list = [Project(1, "billing", "invoices"), Project(2, "reports", "")]
        states = ["success", "failed", None, "missed", "success", "success"]
        self.job_list = [
            Job(
                id=i,
                project_id=1 if i <= 4 else 2,
                spec=["@every 5s", "*/10 * * * * *", "0 3 * * *", "@hourly", "*/5 * * * *"][i % 5],
                timezone="UTC" if i % 2 else "Europe/Paris",
                callback_url=f"http://hooks.example/{i}",
                data=f'{{"job": {i}}}',
                paused=i == 3,
                next_run_at=None if i == 3 else iso(i * 7),
                last_state=states[i - 1],
                last_status_code={"success": 200, "failed": 500}.get(states[i - 1] or ""),
                last_execution_date=iso(-i * 11),
                name=[None, "nightly-invoices", "sync", None, "weekly-report", None][i - 1],
                labels=(("team", "ops"),) if i in (2, 5) else (),
                status="paused" if i == 3 else "active",
                status_note="db maintenance" if i == 3 else None,
                policies=JOB_2_POLICIES if i == 2 else (),
                counters=JobCounters(fired=10 * i, success=9 * i, failed=i - 1, missed=i % 3),
            )
            for i in range(1, 7)
        ]
        kinds = ["success", "success", "failed", "dispatched", "missed", "lost", "success"]
        self.execution_list = [
            Execution(
                id=100 - n,
                execution_id=f"{n % 6 + 1}-{int(NOW) - n * 5}" + ("-m0" if n == 3 else ""),
                job_id=n % 6 + 1,
                scheduled_at=iso(-n * 5),
                state=kinds[n % 7],
                status_code={"success": 200, "failed": 503}.get(kinds[n % 7]),
                attempts=1 if kinds[n % 7] != "failed" else 3,
                latency_ms=12 + n,
                error="HTTP 503 from http://hooks.example/4" if kinds[n % 7] == "failed" else None,
                node_id=1 + n % 2,
                trigger="manual" if n == 3 else "schedule",
                updated_at=iso(-n * 5 + n % 4),
            )
            for n in range(12)
        ]

    def cluster(self) -> ClusterView:
        self.calls.append("cluster")
        if self.cluster_error is not None:
            raise self.cluster_error
        self.check()
        here = next((m.node_id for m in self.members if m.address == self.url), 1)
        return ClusterView(here, 1, 7, True, 3, 5120, 5120, self.members)

    def check(self) -> None:
        if self.url in self.refused:
            raise self.refused[self.url]

    def projects(self) -> list[Project]:
        self.check()
        return list(self.project_list)

    def create_project(self, name: str, description: str) -> Project:
        project = Project(len(self.project_list) + 1, name, description)
        self.project_list.append(project)
        return project

    def jobs(self, project: int | None, text: str, offset: int = 0) -> JobPage:
        self.check()
        self.calls.append(f"jobs {text!r} {offset}")
        with self.lock:
            jobs = [j for j in self.job_list if project in (None, j.project_id)]
        found = [j for j in jobs if j.matches(text)]
        if self.page_size is None:
            return JobPage(tuple(found), len(jobs))
        page = found[offset : offset + self.page_size]
        return JobPage(tuple(page), len(found), offset, self.page_size)

    def executions(
        self,
        job: int | None,
        state: str | None,
        limit: int = 50,
        *,
        trigger: str | None = None,
        offset: int = 0,
    ) -> list[Execution]:
        self.check()
        return [
            e
            for e in self.execution_list
            if job in (None, e.job_id) and state in (None, e.state) and trigger in (None, e.trigger)
        ][offset : offset + limit]

    def preview_schedule(self, spec: str, timezone: str, count: int) -> list[str]:
        self.calls.append(f"preview {spec!r} {timezone!r}")
        if len(spec.split()) not in (5, 6) and not spec.startswith("@"):
            message = "expected 5 fields (crontab) or 6 (seconds first)"
            raise ValidationFailed("invalid schedule", [FieldError("spec", message)])
        first = datetime(2024, 3, 28, 9, tzinfo=UTC)
        return [(first + timedelta(days=n)).isoformat() for n in range(count)]

    def create_job(self, draft: JobDraft) -> Job:
        self.drafts.append(draft)
        errors = []
        end_at = draft.to_body().get("end_at")
        if isinstance(end_at, str) and not end_at[:4].isdigit():
            errors.append(FieldError("end_at", "must be an RFC 3339 time with its offset", 0))
        if len(draft.spec.split()) not in (5, 6) and not draft.spec.startswith("@"):
            errors.append(FieldError("spec", "expected 5 fields (crontab) or 6 (seconds first)", 0))
        if not draft.callback_url.startswith("http"):
            errors.append(FieldError("callback_url", "must be an absolute http(s) URL", 0))
        if errors:
            raise ValidationFailed("invalid job", errors)
        with self.lock:
            job = Job(len(self.job_list) + 1, draft.project_id or 1, draft.spec)
            self.job_list.append(job)
        return job

    def update_job(self, job_id: int, draft: JobDraft) -> Job:
        self.drafts.append(draft)
        return self._change(job_id, spec=draft.spec)

    def _change(self, job_id: int, **changes: Any) -> Job:
        with self.lock:
            for n, job in enumerate(self.job_list):
                if job.id == job_id:
                    self.job_list[n] = replace(job, **changes)
                    return self.job_list[n]
        raise NotFound(f"no job {job_id}")

    def delete_job(self, job_id: int) -> None:
        with self.lock:
            self.job_list = [j for j in self.job_list if j.id != job_id]

    def pause_job(self, job_id: int, note: str | None = None) -> Job:
        self.calls.append(f"pause {job_id} {note!r}")
        return self._change(job_id, paused=True, status="paused", status_note=note)

    def resume_job(self, job_id: int, note: str | None = None) -> Job:
        self.calls.append(f"resume {job_id} {note!r}")
        return self._change(job_id, paused=False, status="active", status_note=note)

    def run_job(self, job_id: int) -> None:
        self.calls.append(f"run {job_id}")

    def backfill_job(self, job_id: int, start: str, end: str) -> dict[str, Any]:
        self.calls.append(f"backfill {job_id} {start} {end}")
        if not start.endswith("Z"):
            raise ValidationFailed("invalid", [FieldError("from", "must carry its offset")])
        if end <= start:
            raise ValidationFailed("invalid", [FieldError("to", "must be later than from")])
        return {"job_id": job_id, "requested": 24, "queued": 20, "already_done": 4}

    def switch(self, node_url: str) -> None:
        self.url = node_url

    def sign_in(self, credentials: SignIn) -> None:
        self.calls.append(f"sign in {credentials.api_key or credentials.username}")
        if credentials.api_key == "right-key":
            self.refused.pop(self.url, None)

    def close(self) -> None:
        pass


def console(source: FakeSource | None = None) -> ConsoleApp:
    return create_console(source or FakeSource(), clock=frozen_clock, refresh_seconds=None)


async def until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Let the app run until ``condition`` holds; ``TimeoutError`` after ``timeout`` s.

    As in test_console_pilot: it awaits ``pilot.pause`` so that the app runs,
    and any exception a condition raises (an ``AssertionError`` first of all)
    propagates at once.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for the console")
        await pilot.pause(0.02)


def loaded(app: ConsoleApp) -> Callable[[], bool]:
    """Every first fetch has landed: cluster, projects, jobs and the log."""

    def check() -> bool:
        tables = {t.id: t.row_count for t in app.main.query(DataTable)}
        return (
            bool(app.connection.view and app.projects and tables["jobs"] and tables["log"])
            and not app._in_flight
        )

    return check


def after(
    *steps: Callable[[Pilot[Any]], Awaitable[None]],
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, ConsoleApp)
        await until(pilot, loaded(app))
        app.tick()  # a second pass, so job rows show project names
        await until(pilot, loaded(app))
        for step in steps:
            await step(pilot)

    return run


# -- snapshots --------------------------------------------------------------


def test_main_screen(snap_compare: Any) -> None:
    assert snap_compare(console(), terminal_size=SIZE, run_before=after())


def test_help_lists_every_key(snap_compare: Any) -> None:
    assert snap_compare(console(), press=["question_mark"], terminal_size=SIZE, run_before=after())


def test_job_form_shows_validation_errors_by_field(snap_compare: Any) -> None:
    async def fill_badly(pilot: Pilot[Any]) -> None:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobForm))
        # The focused field's cursor blinks every 0.5 s: a steady one makes the
        # picture the same however long the steps below take.
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.click("#field-spec")
        await pilot.press(*"every day")
        await pilot.click("#field-callback_url")
        await pilot.press(*"hooks.example")
        await pilot.press("ctrl+s")
        await until(
            pilot, lambda: "-empty" not in pilot.app.screen.query_one("#error-spec").classes
        )
        await until(
            pilot, lambda: "-failed" in pilot.app.screen.query_one("#schedule-preview").classes
        )

    assert snap_compare(console(), terminal_size=SIZE, run_before=after(fill_badly))


def test_job_form_editing_a_job_with_policies(snap_compare: Any) -> None:
    async def edit_job_2(pilot: Pilot[Any]) -> None:
        await pilot.press("down", "e")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobForm))
        await until(pilot, lambda: "Next runs:" in preview_text(pilot.app))
        form = pilot.app.screen
        assert not form.query_one("#policies", Collapsible).collapsed
        form.query_one("#field-overlap", Select).focus()
        form.query_one("#policies").scroll_visible(animate=False, top=True)
        await pilot.pause()

    assert snap_compare(console(), terminal_size=SIZE, run_before=after(edit_job_2))


def test_job_page_with_history(snap_compare: Any) -> None:
    async def open_job(pilot: Pilot[Any]) -> None:
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
        await until(pilot, lambda: pilot.app.screen.query_one("#history", DataTable).row_count > 0)

    assert snap_compare(console(), terminal_size=SIZE, run_before=after(open_job))


@pytest.mark.anyio
async def test_unreachable_node() -> None:
    """Every member dead: the console tried them in turn and says so. (Asserted on
    the text, not a picture: how many retries the bar counts depends on timing.)"""
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        for member in source.members:
            message = f"cannot reach {member.address}: connection refused"
            source.refused[member.address] = Unreachable(message)
        for _ in range(3):
            app.tick()
            await until(pilot, lambda: not app._in_flight)
        bar = str(app.main.query_one(ClusterBar).render())
        assert "(moved here: http://127.0.0.1:9092 unreachable)" in bar
        assert "node unreachable — retrying" in bar
        error = str(app.main.query_one("#nodes-panel .panel-error", Label).render())
        assert "could not refresh: cannot reach http://127.0.0.1:9093" in error


# -- behaviour, without a node ------------------------------------------------


@pytest.mark.anyio
async def test_refresh_updates_rows_in_place_and_keeps_the_cursor() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("down", "down", "down")
        table = app.main.query_one("#jobs", DataTable)
        assert table.cursor_row == 3
        source.resume_job(4)
        source.delete_job(1)  # a row above the cursor goes away
        source.pause_job(4)
        app.tick()
        await until(pilot, lambda: table.row_count == 5)
        assert app.current_job() is not None
        assert app.current_job().id == 4  # type: ignore[union-attr]
        assert str(table.get_cell("4", "paused")) == "yes"


@pytest.mark.anyio
async def test_a_dead_node_is_shown_in_place_and_the_app_keeps_running() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        source.cluster_error = Unreachable("connection refused")
        for _ in range(2):
            app.tick()
            await until(pilot, lambda: not app._in_flight)
        bar = app.main.query_one(ClusterBar)
        # Every member is dead: the console tried another (a failover keeps counting).
        assert "node unreachable — retrying 3/∞" in str(bar.render())
        assert app.main.query_one("#nodes", DataTable).row_count == 3  # last rows kept
        source.cluster_error = None
        app.tick()
        await until(pilot, lambda: app.connection.failures == 0)
        assert "updated 0 s ago" in str(bar.render())


@pytest.mark.anyio
async def test_run_now_asks_first_then_calls_the_node() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("x", "n")  # asked, declined
        await pilot.press("x", "y")
        await until(pilot, lambda: "run 1" in source.calls)
        assert source.calls.count("run 1") == 1


def form_error(app: ConsoleApp, name: str) -> str:
    return str(app.screen.query_one(f"#error-{name}", Label).render())


@pytest.mark.anyio
async def test_backfill_asks_for_a_range_shows_refusals_by_field_then_calls_the_node() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BackfillForm))
        now = datetime.fromtimestamp(app.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert app.screen.query_one("#field-to", Input).value == now  # prefilled
        await pilot.press(*"2024-03-27T00:00:00", "ctrl+s")
        await until(pilot, lambda: form_error(app, "from") == "must carry its offset")
        await pilot.press("Z", "ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, BackfillForm))
        sent = [call for call in source.calls if call.startswith("backfill")]
        assert sent == [  # refused, then sent once more with the offset
            f"backfill 1 2024-03-27T00:00:00 {now}",
            f"backfill 1 2024-03-27T00:00:00Z {now}",
        ]


@pytest.mark.anyio
async def test_projects_are_listed_created_and_filter_the_jobs() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ProjectsScreen))
        assert app.screen.query_one(DataTable).row_count == 2
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ProjectForm))
        await pilot.press(*"audit", "ctrl+s")
        await until(pilot, lambda: app.project_filter == 3)
        await until(pilot, lambda: app.main.query_one("#jobs", DataTable).row_count == 0)
        assert "project 3 audit" in str(app.main.query_one("#jobs-panel").border_title)
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ProjectsScreen))
        await pilot.press("a")
        await until(pilot, lambda: app.main.query_one("#jobs", DataTable).row_count == 6)


@pytest.mark.anyio
async def test_switching_node_talks_to_the_chosen_member() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SwitchNodeScreen))
        await pilot.press("down", "enter")
        await until(pilot, lambda: source.url == "http://127.0.0.1:9092")
        await until(pilot, lambda: app.connection.view is not None)
        assert "http://127.0.0.1:9092" in str(app.main.query_one(ClusterBar).render())


def preview_text(app: ConsoleApp) -> str:
    return str(app.screen.query_one("#schedule-preview", Label).render())


@pytest.mark.anyio
async def test_the_job_form_previews_the_next_runs_as_you_type() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, JobForm))
        assert "as you type" in preview_text(app)
        await pilot.click("#field-spec")
        keys = list("0 9 * * 1-5")
        await pilot.press(*keys)
        await until(pilot, lambda: "Next runs:" in preview_text(app))
        assert preview_text(app).splitlines()[1:] == [
            "Thu 2024-03-28 09:00:00 +00:00",
            "Fri 2024-03-29 09:00:00 +00:00",
            "Sat 2024-03-30 09:00:00 +00:00",
            "Sun 2024-03-31 09:00:00 +00:00",
            "Mon 2024-04-01 09:00:00 +00:00",
        ]
        asked = [c for c in source.calls if c.startswith("preview")]
        assert asked[-1] == "preview '0 9 * * 1-5' ''"
        assert len(asked) < len(keys)  # debounced: not one request per key
        # an invalid spec shows the node's reason, in the error style
        await pilot.press("backspace", *" x y")
        await until(pilot, lambda: "spec: expected 5 fields" in preview_text(app))
        assert "-failed" in app.screen.query_one("#schedule-preview").classes
        # a blank spec shows the hint again, without asking
        before = len(source.calls)
        app.screen.query_one("#field-spec", Input).value = ""
        await until(pilot, lambda: "as you type" in preview_text(app))
        assert len(source.calls) == before


@pytest.mark.anyio
async def test_editing_a_job_previews_its_schedule_at_once() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, JobForm))
        await until(pilot, lambda: "Next runs:" in preview_text(app))
        job = app.screen.job  # type: ignore[attr-defined]
        assert f"preview {job.spec!r} {job.timezone!r}" in source.calls


def newest_first(app: ConsoleApp) -> list[str]:
    return [key.value or "" for key in app.main.query_one("#log", DataTable).rows]


def log_cursor_key(app: ConsoleApp) -> str | None:
    table = app.main.query_one("#log", DataTable)
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def add_executions(source: FakeSource, count: int) -> list[int]:
    first = max(e.id for e in source.execution_list) + 1
    fresh = [
        Execution(id=n, execution_id=f"1-{n}", job_id=1, scheduled_at=iso(n), state="success")
        for n in range(first, first + count)
    ]
    source.execution_list = [*reversed(fresh), *source.execution_list]
    return [e.id for e in fresh]


@pytest.mark.anyio
async def test_the_log_follows_the_newest_rows_until_the_operator_moves_away() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        panel = app.main.query_one("#log-panel")
        [newest] = add_executions(source, 1)
        app.tick()
        await until(pilot, lambda: newest_first(app)[0] == str(newest))
        assert log_cursor_key(app) == str(newest)  # following: the cursor is on the newest
        app.main.query_one("#log", DataTable).focus()
        await pilot.press("down")  # the operator moves away
        kept = log_cursor_key(app)
        assert kept is not None and kept != str(newest)
        later = add_executions(source, 3)
        app.tick()
        await until(pilot, lambda: newest_first(app)[0] == str(later[-1]))
        assert panel.border_subtitle == "3 newer rows — press End"
        assert log_cursor_key(app) == kept  # not dragged along
        await pilot.press("end")
        assert panel.border_subtitle == ""
        assert log_cursor_key(app) == str(later[-1])
        [last] = add_executions(source, 1)
        app.tick()
        await until(pilot, lambda: log_cursor_key(app) == str(last))  # following again
        assert panel.border_subtitle == ""


@pytest.mark.anyio
async def test_a_switch_refused_with_401_shows_nothing_of_the_previous_node_and_asks() -> None:
    source = FakeSource()
    source.refused["http://127.0.0.1:9092"] = Unauthorized("invalid api key or secret")
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SwitchNodeScreen))
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, CredentialsScreen))
        tables = {t.id: t.row_count for t in app.main.query(DataTable)}
        assert tables == {"nodes": 0, "jobs": 0, "log": 0}
        assert not app.jobs and app.connection.view is None
        assert "invalid api key" in str(app.main.query_one(ClusterBar).render())
        # Declined: the switch dialog still lists the members the console knew.
        await pilot.press("escape")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SwitchNodeScreen))
        assert app.screen.query_one(OptionList).option_count == 3
        await pilot.press("escape")
        # Answered: the node's own rows arrive.
        app._credentials_declined = False
        app.tick()
        await until(pilot, lambda: isinstance(app.screen, CredentialsScreen))
        await pilot.press(*"right-key", "tab", *"secret", "enter")
        await until(pilot, lambda: app.connection.view is not None)
        assert app.connection.view is not None and app.connection.view.node_id == 2
        await until(pilot, lambda: app.main.query_one("#jobs", DataTable).row_count == 6)
        assert "sign in right-key" in source.calls


@pytest.mark.anyio
async def test_an_unreachable_node_hands_over_to_another_member() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        source.refused["http://127.0.0.1:9091"] = Unreachable("connection refused")
        for _ in range(2):
            app.tick()
            await until(pilot, lambda: not app._in_flight)
        await until(pilot, lambda: app.connection.view is not None)
        assert source.url == "http://127.0.0.1:9092"
        assert app.connection.view is not None and app.connection.view.node_id == 2
        bar = str(app.main.query_one(ClusterBar).render())
        assert "node 2 http://127.0.0.1:9092" in bar
        assert "moved here: http://127.0.0.1:9091 unreachable" in bar


@pytest.mark.anyio
async def test_rows_older_than_one_refresh_are_marked_with_their_age() -> None:
    source = FakeSource()
    now = [NOW]
    app = create_console(source, clock=lambda: now[0], refresh_seconds=1.0)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        source.cluster_error = Unreachable("connection refused")
        source.refused["http://127.0.0.1:9091"] = Unreachable("connection refused")
        now[0] += 7
        app.tick()
        jobs = app.main.query_one("#jobs", DataTable)
        await until(pilot, lambda: "-stale" in jobs.classes)
        error = str(app.main.query_one("#jobs-panel .panel-error", Label).render())
        assert "stale: these rows are 7 s old" in error


@pytest.mark.anyio
async def test_the_activity_sparklines_draw_fires_per_second_and_delivery_lateness() -> None:
    source = FakeSource()
    now = [NOW]
    app = create_console(source, clock=lambda: now[0], refresh_seconds=None)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        for step, fired in enumerate((100, 104, 112)):
            source.members = tuple(
                replace(m, fired=fired, delivery_lag_p99_seconds=0.1 * step) for m in source.members
            )
            now[0] += 2
            app.tick()
            await until(pilot, lambda: not app._in_flight)
        fires = app.main.query_one("#activity-1 .fires", Sparkline)
        await until(pilot, lambda: list(fires.data or []) == [2.0, 4.0])
        delivery = app.main.query_one("#activity-1 .delivery", Sparkline)
        assert list(delivery.data or [])[-3:] == [0.0, 0.1, 0.2]
        assert (
            not app.main.query("#activity-3 .fires")
            or not app.main.query_one("#activity-3 .fires", Sparkline).data
        )  # node 3 is unreachable: no points


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield Vertical(id="host")


@pytest.mark.anyio
async def test_a_node_row_shown_before_it_is_mounted_draws_the_latest_series() -> None:
    """A refresh can reach a member's row between its mount and its children's:
    it keeps the series instead of failing to find its sparklines."""
    app = _Host()
    async with app.run_test(size=SIZE) as pilot:
        row = NodeActivity(1)
        app.query_one("#host", Vertical).mount(row)  # not awaited: nothing composed yet
        row.show([1.0], [0.1])
        row.show([3.0, 4.0], [0.2])
        await until(pilot, lambda: row.is_mounted)
        assert list(row.query_one(".fires", Sparkline).data or []) == [3.0, 4.0]
        assert list(row.query_one(".delivery", Sparkline).data or []) == [0.2]
        assert str(row.query_one(".fires-now", Label).render()) == "4.0"


@pytest.mark.anyio
async def test_slash_searches_labels_and_text_through_the_source() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("slash", *"team=ops report")
        table = app.main.query_one(JobsTable)
        await until(pilot, lambda: [k.value for k in table.rows] == ["5"])
        assert app.text_filter == "team=ops report"


def test_the_job_form_sends_name_and_labels_and_clears_them_on_edit() -> None:
    draft = JobDraft(
        spec="@hourly", callback_url="http://h/", project_id=1, name=" billing ", labels="a=1 b=2"
    )
    assert draft.to_body() == {
        "spec": "@hourly",
        "callback_url": "http://h/",
        "project_id": 1,
        "name": "billing",
        "labels": {"a": "1", "b": "2"},
    }
    blank = JobDraft(spec="@hourly", callback_url="http://h/", project_id=1)
    assert "name" not in blank.to_body() and "labels" not in blank.to_body()
    assert blank.to_body(with_project=False) == {
        "spec": "@hourly",
        "callback_url": "http://h/",
        "name": None,
        "labels": {},
    }


async def type_into(pilot: Pilot[Any], selector: str, text: str) -> None:
    """Focus the field (scrolled into view) and type ``text`` key by key."""
    pilot.app.screen.query_one(selector, Input).focus()
    await pilot.pause()
    await pilot.press(*text)


@pytest.mark.anyio
async def test_policies_set_in_the_form_reach_the_body_and_a_refused_end_at_shows_under_it() -> (
    None
):
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, JobForm))
        form = app.screen
        policies = form.query_one("#policies", Collapsible)
        assert policies.collapsed  # a new job: folded away
        form.query_one("#field-spec", Input).value = "@hourly"
        form.query_one("#field-callback_url", Input).value = "http://hooks.example/new"
        form.query_one("#policies CollapsibleTitle").focus()
        await pilot.press("enter")  # the keyboard opens the section
        await until(pilot, lambda: not policies.collapsed)
        form.query_one("#field-overlap", Select).value = "skip"
        await type_into(pilot, "#field-max_runs", "3")
        await type_into(pilot, "#field-retry-attempts", "2")
        await type_into(pilot, "#field-end_at", "yesterday")
        policies.collapsed = True  # the refusal must open it again
        await pilot.press("ctrl+s")
        error = form.query_one("#error-end_at", Label)
        await until(pilot, lambda: "-empty" not in error.classes)
        assert str(error.render()) == "must be an RFC 3339 time with its offset"
        assert not policies.collapsed
        assert isinstance(app.screen, JobForm)  # still open
        assert source.drafts[-1].to_body() == {
            "spec": "@hourly",
            "callback_url": "http://hooks.example/new",
            "project_id": None,
            "overlap": "skip",
            "retry": {"attempts": 2},
            "end_at": "yesterday",
            "max_runs": 3,
        }
        form.query_one("#field-end_at", Input).value = "2026-12-31T00:00:00Z"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, JobForm))
        assert source.drafts[-1].to_body()["end_at"] == "2026-12-31T00:00:00Z"


@pytest.mark.anyio
async def test_editing_shows_the_policies_and_a_cleared_one_is_sent_as_null() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("down", "e")
        await until(pilot, lambda: isinstance(app.screen, JobForm))
        form = app.screen
        assert str(form.query_one("#policies", Collapsible).title) == "Policies (6 set)"
        assert form.query_one("#field-catchup", Select).value == "all"
        assert form.query_one("#field-retry-initial_seconds", Input).value == "0.5"
        form.query_one("#field-overlap", Select).clear()
        form.query_one("#field-retry-attempts", Input).value = ""
        form.query_one("#field-max_runs", Input).value = ""
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, JobForm))
        body = source.drafts[-1].to_body(with_project=False)
        policies = {k: v for k, v in body.items() if k not in ("spec", "callback_url", "timezone")}
        assert policies == {
            "data": '{"job": 2}',
            "name": "nightly-invoices",
            "labels": {"team": "ops"},
            "overlap": None,
            "catchup": "all",
            "retry": {"initial_seconds": 0.5},
            "end_at": "2026-12-31T00:00:00Z",
            "max_runs": None,
        }


@pytest.mark.anyio
async def test_pause_with_a_note_sends_the_note_and_the_plain_key_sends_none() -> None:
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, NoteScreen))
        await pilot.press(*"deploy freeze", "enter")
        await until(pilot, lambda: "pause 1 'deploy freeze'" in source.calls)
        await pilot.press("U", "escape")  # asked, cancelled: nothing sent
        await pilot.press("u", "y")
        await until(pilot, lambda: "resume 1 None" in source.calls)
        assert [c for c in source.calls if c.startswith("resume")] == ["resume 1 None"]
        assert source.job_list[0].status == "active"


def test_a_jobs_policies_read_from_the_node_are_the_texts_the_form_edits() -> None:
    job = Job.from_api(
        {
            "id": 7,
            "project_id": 1,
            "spec": "@hourly",
            "status": "paused",
            "status_note": "paused after 3 consecutive failures (last: HTTP 500)",
            "overlap": "allow",
            "catchup": "none",
            "catchup_window_seconds": 300.0,
            "retry": {"attempts": 0, "multiplier": 1.5, "jitter": None},
            "timeout_seconds": 2.5,
            "start_at": "2026-01-01T00:00:00Z",
            "jitter_seconds": 0,
            "pause_after_failures": 3,
        }
    )
    assert (job.status, job.status_note) == (
        "paused",
        "paused after 3 consecutive failures (last: HTTP 500)",
    )
    assert job.policies == (
        ("catchup", "none"),
        ("catchup_window_seconds", "300"),
        ("retry.attempts", "0"),
        ("retry.multiplier", "1.5"),
        ("timeout_seconds", "2.5"),
        ("start_at", "2026-01-01T00:00:00Z"),
        ("pause_after_failures", "3"),
    )
    # Sent back unchanged, the same values (numbers as numbers).
    draft = JobDraft(
        spec="@hourly", callback_url="http://h/", policies=job.policies, had=frozenset()
    )
    body = draft.to_body(with_project=False)
    assert {k: body[k] for k in ("catchup_window_seconds", "retry", "timeout_seconds")} == {
        "catchup_window_seconds": 300,
        "retry": {"attempts": 0, "multiplier": 1.5},
        "timeout_seconds": 2.5,
    }


@pytest.mark.anyio
async def test_the_job_page_shows_a_paused_jobs_note_and_its_default_policies() -> None:
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        detail = str(app.screen.query_one("#job-detail", Static).render())
        lines = {line.strip().split("  ", 1)[0]: line.strip() for line in detail.splitlines()}
        assert lines["status"] == "status  paused — db maintenance"
        assert lines["next run"] == "next run  -"
        assert lines["policies"] == "policies  defaults"


# -- paging, sorting, the job page's summary ----------------------------------------


def jobs_title(app: ConsoleApp) -> str:
    return str(app.main.query_one("#jobs-panel").border_title)


def job_keys(app: ConsoleApp) -> list[str]:
    return [key.value or "" for key in app.main.query_one(JobsTable).rows]


@pytest.mark.anyio
async def test_brackets_page_the_jobs_on_the_node_and_a_search_starts_at_its_first_page() -> None:
    source = FakeSource()
    source.page_size = 2
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        assert job_keys(app) == ["1", "2"]
        assert "jobs 1-2 of 6 ([ ]: pages)" in jobs_title(app)
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: job_keys(app) == ["3", "4"])
        assert "jobs 3-4 of 6" in jobs_title(app)
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: job_keys(app) == ["1", "2"])
        await pilot.press("right_square_bracket", "right_square_bracket")  # held: two pages
        await until(pilot, lambda: job_keys(app) == ["5", "6"])
        await pilot.press("right_square_bracket")  # the last page: it stays
        await pilot.pause()
        assert job_keys(app) == ["5", "6"] and app.jobs_offset == 4
        assert "jobs 5-6 of 6" in jobs_title(app)
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: job_keys(app) == ["3", "4"])
        await pilot.press("slash", *"*/")  # a search asks for its first page
        await until(pilot, lambda: job_keys(app) == ["1", "4"])
        assert "jobs '*/' 0" in source.calls
        assert 'matching "*/" · jobs 1-2 of 3' in jobs_title(app)
        await pilot.press("enter", "right_square_bracket")
        await until(pilot, lambda: job_keys(app) == ["6"])
        assert "jobs '*/' 2" in source.calls
        assert "jobs 3-3 of 3" in jobs_title(app)


@pytest.mark.anyio
async def test_a_header_click_or_s_sorts_the_page_and_the_panel_says_within_this_page() -> None:
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        table = app.main.query_one(JobsTable)
        columns = [c.key.value for c in table.ordered_columns]
        x = sum(c.get_render_width(table) for c in table.ordered_columns[: columns.index("name")])
        await pilot.click(JobsTable, offset=(x + 2, 0))
        await until(pilot, lambda: job_keys(app)[:3] == ["2", "3", "5"])  # names, then blanks
        assert job_keys(app) == ["2", "3", "5", "1", "4", "6"]
        assert "sorted by name ↑ within this page" in jobs_title(app)
        await pilot.click(JobsTable, offset=(x + 2, 0))  # again: the other way
        await until(pilot, lambda: "sorted by name ↓" in jobs_title(app))
        assert job_keys(app) == ["1", "4", "6", "5", "3", "2"]  # ties keep the node's order
        await pilot.click(JobsTable, offset=(x + 2, 0))  # a third time: the node's order
        await until(pilot, lambda: job_keys(app) == ["1", "2", "3", "4", "5", "6"])
        assert "sorted" not in jobs_title(app)
        table.focus()
        await pilot.press("S", "S", "S", "S")  # id, name, project, spec
        assert "sorted by spec ↑" in jobs_title(app)
        assert job_keys(app) == ["1", "6", "4", "2", "5", "3"]  # "*/10" < "*/5" < "0 3" < "@"
        await pilot.press("R")
        assert "sorted by spec ↓" in jobs_title(app)
        assert job_keys(app)[0] == "3"
        app.tick()  # a refresh keeps the order
        await until(pilot, lambda: not app._in_flight)
        assert job_keys(app)[0] == "3"


@pytest.mark.anyio
async def test_the_log_filters_by_trigger_and_pages_older_rows_from_the_source() -> None:
    source = FakeSource()
    added = add_executions(source, 60)
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        log_title = app.main.query_one("#log-panel")
        assert newest_first(app)[0] == str(added[-1]) and len(newest_first(app)) == 50
        await pilot.press("greater_than_sign")  # older: rows 51-72 of 72
        await until(pilot, lambda: newest_first(app)[0] == str(added[9]))
        assert len(newest_first(app)) == 22
        assert "rows 51-100, older (<: newer)" in str(log_title.border_title)
        await pilot.press("greater_than_sign")  # nothing older: back a page
        await until(pilot, lambda: app.log_offset == 50 and not app._in_flight)
        await pilot.press("less_than_sign")
        await until(pilot, lambda: newest_first(app)[0] == str(added[-1]))
        assert "newest first" in str(log_title.border_title)
        await pilot.press("g", "g")  # all → schedule → manual
        await until(pilot, lambda: newest_first(app) == ["97"])
        assert "· manual ·" in str(log_title.border_title)
        await pilot.press("t", "t")  # a state as well: successful manual runs, none
        await until(pilot, lambda: newest_first(app) == [])


@pytest.mark.anyio
async def test_the_job_page_shows_counters_project_next_runs_and_the_last_run_of_its_history() -> (
    None
):
    source = FakeSource()
    app = console(source)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        app.tick()  # the projects by name
        await until(pilot, lambda: not app._in_flight)
        await pilot.press("down", "down", "down", "enter")  # job 4: its newest run is manual
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        screen = app.screen
        assert isinstance(screen, JobScreen) and screen.job.id == 4
        summary = screen.query_one(JobSummary)
        await until(pilot, lambda: summary.runs and summary.history_landed)
        text = str(summary.summary())
        assert "project  1 billing" in text
        assert "runs  fired 40 · success 36 · failed 3 · missed 1" in text
        # The job's own last_execution_date is its last scheduled fire (15:08:42);
        # the history's newest row is the manual run at 15:09:11: the page says that.
        assert "last run  15:09:11 UTC · manual · dispatched" in text
        assert "next 5  03-28 09:00:00 +00:00  03-29 09:00:00 +00:00" in text
        assert "preview '*/5 * * * *' 'Europe/Paris'" in source.calls
        source._change(4, spec="@hourly")  # a changed spec: its runs are asked again
        app.tick()
        await until(pilot, lambda: "preview '@hourly' 'Europe/Paris'" in source.calls)
