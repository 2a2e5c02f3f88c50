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
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, OptionList, Sparkline

from scheduler0.client import Unreachable
from scheduler0.console.app import ConsoleApp, create_console
from scheduler0.console.forms import BackfillForm, JobForm, ProjectForm
from scheduler0.console.screens import (
    CredentialsScreen,
    JobScreen,
    ProjectsScreen,
    SwitchNodeScreen,
)
from scheduler0.console.source import (
    ClusterView,
    Execution,
    Job,
    JobDraft,
    JobPage,
    Member,
    Project,
    SignIn,
)
from scheduler0.console.widgets import ClusterBar, JobsTable
from scheduler0.errors import FieldError, NotFound, Unauthorized, ValidationFailed

SIZE = (140, 45)
NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC).timestamp()


def frozen_clock() -> float:
    return NOW


def iso(offset: float) -> str:
    return datetime.fromtimestamp(NOW + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def jobs(self, project: int | None, text: str) -> JobPage:
        self.check()
        with self.lock:
            jobs = [j for j in self.job_list if project in (None, j.project_id)]
        return JobPage(tuple(j for j in jobs if j.matches(text)), len(jobs))

    def executions(self, job: int | None, state: str | None, limit: int = 50) -> list[Execution]:
        self.check()
        return [
            e for e in self.execution_list if job in (None, e.job_id) and state in (None, e.state)
        ][:limit]

    def preview_schedule(self, spec: str, timezone: str, count: int) -> list[str]:
        self.calls.append(f"preview {spec!r} {timezone!r}")
        if len(spec.split()) not in (5, 6) and not spec.startswith("@"):
            message = "expected 5 fields (crontab) or 6 (seconds first)"
            raise ValidationFailed("invalid schedule", [FieldError("spec", message)])
        first = datetime(2024, 3, 28, 9, tzinfo=UTC)
        return [(first + timedelta(days=n)).isoformat() for n in range(count)]

    def create_job(self, draft: JobDraft) -> Job:
        errors = []
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

    def pause_job(self, job_id: int) -> Job:
        return self._change(job_id, paused=True)

    def resume_job(self, job_id: int) -> Job:
        return self._change(job_id, paused=False)

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


async def until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 5.0) -> None:
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


def test_job_page_with_history(snap_compare: Any) -> None:
    async def open_job(pilot: Pilot[Any]) -> None:
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
        await until(pilot, lambda: pilot.app.screen.query_one("#history", DataTable).row_count > 0)

    assert snap_compare(console(), terminal_size=SIZE, run_before=after(open_job))


def test_unreachable_node(snap_compare: Any) -> None:
    source = FakeSource()

    async def kill(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, ConsoleApp)
        for member in source.members:  # every member dead: it tried them in turn
            message = f"cannot reach {member.address}: connection refused"
            source.refused[member.address] = Unreachable(message)
        for _ in range(3):
            app.tick()
            await until(pilot, lambda: not app._in_flight)

    assert snap_compare(console(source), terminal_size=SIZE, run_before=after(kill))


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
        assert source.calls[-1] == f"backfill 1 2024-03-27T00:00:00Z {now}"


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
