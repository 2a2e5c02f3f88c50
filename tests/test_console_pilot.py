"""The console driven by keys against real node processes and a real receiver:
create a job through the form (a bad spec first), see it and its executions,
pause it, delete it; kill the node and see the bar say so while the app keeps
running; restart it and see the console reconnect by itself. Then: the live
log following its newest rows and counting the newer ones once the operator
moved away; a switch to a node that refuses the credentials (nothing of the
previous node stays, a prompt asks for others); the connected member of a
3-node cluster killed (the console reads from another); the sparklines moving;
20,000 jobs searched and paged on the node, and a job page after a run-now."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Collapsible, DataTable, Input, Label, Select, Sparkline

from scheduler0.console.app import ConsoleApp, create_console
from scheduler0.console.forms import JobForm
from scheduler0.console.http_source import Credentials, HttpSource
from scheduler0.console.job_summary import JobSummary
from scheduler0.console.screens import (
    ConfirmScreen,
    CredentialsScreen,
    HelpScreen,
    JobScreen,
    NoteScreen,
    SwitchNodeScreen,
)
from scheduler0.console.widgets import ClusterBar
from tests.support.nodes import NodeProcess, create_credential, running_cluster, running_node
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.anyio

SIZE = (140, 45)


async def until(
    pilot: Pilot[Any], condition: Callable[[], object], timeout: float, what: str
) -> None:
    """Let the app run until ``condition`` holds; ``TimeoutError`` after ``timeout`` s.

    The async twin of ``tests.support.nodes.wait_until`` (it must await
    ``pilot.pause`` so that the app runs meanwhile). The conditions read the
    app in this process, so nothing is "not up yet": any exception a condition
    raises, an ``AssertionError`` first of all, propagates at once.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


async def type_into(pilot: Pilot[Any], selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = ""
    await pilot.press(*text)


def bar_text(app: ConsoleApp) -> str:
    return str(app.main.query_one(ClusterBar).render())


def cell(table: DataTable[Any], row: str, column: str) -> str:
    return str(table.get_cell(row, column)) if row in table.rows else ""


async def test_console_against_a_real_node(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver, running_node(tmp_path / "node") as node:
        headers = create_credential(node)
        httpx.post(
            f"{node.api}/projects", json={"name": "console"}, headers=headers, timeout=10
        ).raise_for_status()
        source = HttpSource(
            node.url, Credentials(api_key=headers["x-api-key"], api_secret=headers["x-secret-key"])
        )
        app = create_console(source)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: "quorum yes" in bar_text(app), 10, "the cluster bar")
                await until(pilot, lambda: app.projects, 10, "the projects")
                jobs = app.main.query_one("#jobs", DataTable)
                log = app.main.query_one("#log", DataTable)

                # The form: a bad spec is refused next to its field.
                await pilot.press("n")
                await until(pilot, lambda: isinstance(app.screen, JobForm), 5, "the job form")
                await type_into(pilot, "#field-spec", "every second")
                await type_into(pilot, "#field-callback_url", f"{receiver.url}/cb")
                await pilot.press("ctrl+s")
                spec_error = app.screen.query_one("#error-spec")
                await until(pilot, lambda: "-empty" not in spec_error.classes, 10, "spec error")
                assert "fields" in str(spec_error.render())
                assert isinstance(app.screen, JobForm)  # still open, nothing created

                # The node's preview follows the typing: its next runs, or its reason.
                preview = app.screen.query_one("#schedule-preview", Label)
                await until(pilot, lambda: "fields" in str(preview.render()), 10, "preview error")
                await type_into(pilot, "#field-spec", "0 9 * * 1-5")
                await type_into(pilot, "#field-timezone", "Europe/Paris")
                await until(pilot, lambda: "Next runs:" in str(preview.render()), 10, "the runs")
                runs = str(preview.render()).splitlines()[1:]
                assert len(runs) == 5
                assert all(" 09:00:00 +0" in run and run[:3] not in ("Sat", "Sun") for run in runs)
                await type_into(pilot, "#field-timezone", "")

                await type_into(pilot, "#field-spec", "@every 1s")
                # Policies: the node's refusal of end_at shows under it.
                app.screen.query_one("#policies", Collapsible).collapsed = False
                app.screen.query_one("#field-overlap", Select).value = "skip"
                await type_into(pilot, "#field-retry-attempts", "1")
                await type_into(pilot, "#field-timeout_seconds", "5")
                await type_into(pilot, "#field-end_at", "tomorrow")
                await pilot.press("ctrl+s")
                end_error = app.screen.query_one("#error-end_at")
                await until(pilot, lambda: "-empty" not in end_error.classes, 10, "end_at error")
                assert "RFC 3339" in str(end_error.render())
                assert isinstance(app.screen, JobForm)
                await type_into(pilot, "#field-end_at", "2099-01-01T00:00:00Z")
                await pilot.press("ctrl+s")
                await until(pilot, lambda: not isinstance(app.screen, JobForm), 10, "form closed")
                await until(pilot, lambda: jobs.row_count == 1, 10, "the job row")
                job_id = app.jobs[next(iter(app.jobs))].id
                key = str(job_id)
                assert cell(jobs, key, "spec") == "@every 1s"
                stored = httpx.get(f"{node.api}/jobs/{job_id}", headers=headers, timeout=10).json()[
                    "data"
                ]
                assert (stored["overlap"], stored["timeout_seconds"]) == ("skip", 5.0)
                assert (stored["retry"]["attempts"], stored["end_at"]) == (
                    1,
                    "2099-01-01T00:00:00Z",
                )

                # Its executions arrive in the live log, and in the table's last status.
                def succeeded() -> bool:
                    return any(
                        cell(log, r.value or "", "job") == key
                        and cell(log, r.value or "", "state") == "success"
                        for r in log.rows
                    )

                await until(pilot, succeeded, 15, "a successful execution in the log")
                await until(
                    pilot, lambda: "success" in cell(jobs, key, "last_status"), 10, "status"
                )
                assert receiver.records(), "the receiver was called"

                # Pause with a note: the job's status_note.
                await pilot.press("P")
                await until(pilot, lambda: isinstance(app.screen, NoteScreen), 5, "the note")
                await pilot.press(*"maintenance", "enter")
                await until(pilot, lambda: cell(jobs, key, "paused") == "yes", 10, "paused")
                stored = httpx.get(f"{node.api}/jobs/{job_id}", headers=headers, timeout=10).json()[
                    "data"
                ]
                assert (stored["status"], stored["status_note"]) == ("paused", "maintenance")

                # Delete, with a confirmation.
                await pilot.press("d")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "confirm")
                await pilot.press("y")
                await until(pilot, lambda: jobs.row_count == 0, 10, "the row to go")

                # The node dies: the bar says so, the app keeps running and answering keys.
                node.kill()
                await until(pilot, lambda: "unreachable" in bar_text(app), 10, "unreachable")
                await until(pilot, lambda: "retrying 2/∞" in bar_text(app), 10, "retries")
                await pilot.press("question_mark")
                await until(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "help, node dead")
                await pilot.press("escape")
                assert app.is_running

                # It comes back on the same address: the console reconnects by itself.
                node.start()
                await until(pilot, lambda: "updated" in bar_text(app), 20, "reconnection")
                assert "quorum yes" in bar_text(app)
        finally:
            source.close()


# -- live, truthful, with pictures -------------------------------------------------


def source_for(node: NodeProcess, headers: dict[str, str]) -> HttpSource:
    key, secret = headers["x-api-key"], headers["x-secret-key"]
    return HttpSource(node.url, Credentials(api_key=key, api_secret=secret))


def firing_jobs(node: NodeProcess, headers: dict[str, str], url: str, count: int) -> None:
    """A project and ``count`` jobs firing every second at ``url``."""
    with httpx.Client(base_url=node.api, headers=headers, timeout=10) as http:
        project = http.post("/projects", json={"name": "live"}).json()["data"]["id"]
        body = [{"project_id": project, "spec": "@every 1s", "callback_url": url}] * count
        http.post("/jobs", json=body).raise_for_status()


@contextmanager
def firing_node(tmp_path: Path, jobs: int) -> Iterator[tuple[NodeProcess, HttpSource]]:
    receiver: RunningReceiver
    tmp_path.mkdir(parents=True, exist_ok=True)
    with run_receiver(tmp_path) as receiver, running_node(tmp_path / "node") as node:
        headers = create_credential(node)
        firing_jobs(node, headers, f"{receiver.url}/cb", jobs)
        source = source_for(node, headers)
        try:
            yield node, source
        finally:
            source.close()


def log_keys(app: ConsoleApp) -> list[int]:
    return [int(key.value or 0) for key in app.main.query_one("#log", DataTable).rows]


def log_cursor(app: ConsoleApp) -> int | None:
    table = app.main.query_one("#log", DataTable)
    if not table.row_count:
        return None
    return int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or 0)


def banner(app: ConsoleApp) -> str:
    return str(app.main.query_one("#log-panel").border_subtitle or "")


async def test_the_log_follows_new_rows_and_counts_them_once_the_operator_moves_away(
    tmp_path: Path,
) -> None:
    with firing_node(tmp_path, jobs=2) as (_, source):
        app = create_console(source)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(log_keys(app)) >= 3, 20, "executions in the log")
            first = log_keys(app)[0]
            # Following: the newest row moves to the top, and the cursor with it.
            await until(pilot, lambda: log_keys(app)[0] > first, 15, "a newer row on top")
            assert log_cursor(app) == log_keys(app)[0] == max(log_keys(app))
            assert banner(app) == ""

            app.main.query_one("#log", DataTable).focus()
            await pilot.press("down")
            kept = log_cursor(app)
            assert kept is not None and kept != log_keys(app)[0]
            await until(pilot, lambda: "newer" in banner(app), 15, "the newer-rows line")
            found = re.fullmatch(r"(\d+)\+? newer rows? — press End", banner(app))
            assert found is not None and int(found.group(1)) >= 1, banner(app)
            assert log_cursor(app) == kept  # the operator's row stays under the cursor

            await pilot.press("end")
            assert banner(app) == ""
            assert log_cursor(app) == log_keys(app)[0] == max(log_keys(app))
            top = log_keys(app)[0]
            await until(pilot, lambda: log_keys(app)[0] > top, 15, "another newer row")
            assert log_cursor(app) == log_keys(app)[0]  # following again
            assert banner(app) == ""


async def test_the_sparklines_move_with_the_fires_and_the_job_page_draws_its_lateness(
    tmp_path: Path,
) -> None:
    with firing_node(tmp_path, jobs=3) as (_, source):
        app = create_console(source)
        async with app.run_test(size=SIZE) as pilot:

            def fires() -> list[float]:
                return list(app.main.query_one("#activity-1 .fires", Sparkline).data or [])

            # The row, mounted: its sparklines exist only once it is.
            await until(
                pilot, lambda: len(app.main.query("#activity-1 .fires")) == 1, 15, "its row"
            )
            await until(pilot, lambda: len(fires()) >= 3 and max(fires()) > 0, 20, "fires/s")
            drawn = len(fires())
            await until(pilot, lambda: len(fires()) > drawn, 10, "the sparkline to move on")
            # Three jobs at one fire a second: the rate is about three (the median:
            # on a loaded machine one poll may come late and count two seconds).
            assert 1.0 <= statistics.median(fires()) <= 6.0, fires()
            delivery = app.main.query_one("#activity-1 .delivery", Sparkline)
            assert len(list(delivery.data or [])) >= drawn

            await until(pilot, lambda: app.jobs, 10, "the jobs")
            app.main.query_one("#jobs", DataTable).focus()
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), 5, "the job page")
            lateness = app.screen.query_one("#lateness", Sparkline)
            await until(pilot, lambda: len(list(lateness.data or [])) >= 2, 20, "lateness")
            assert all(0 <= point < 30 for point in lateness.data or [])


async def test_a_switch_to_a_node_refusing_the_credentials_clears_and_asks(
    tmp_path: Path,
) -> None:
    with (
        firing_node(tmp_path / "a", jobs=1) as (_, source),
        running_node(tmp_path / "b") as other,
    ):
        other_headers = create_credential(other)
        httpx.post(
            f"{other.api}/projects", json={"name": "bee"}, headers=other_headers, timeout=10
        ).raise_for_status()
        app = create_console(source)
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot, lambda: app.jobs and app.projects and log_keys(app), 20, "the first rows"
            )
            assert {p.name for p in app.projects.values()} == {"live"}

            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, SwitchNodeScreen), 5, "switch")
            await type_into(pilot, "#url", other.url)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, CredentialsScreen), 10, "prompt")
            # Nothing of the first node is left on screen.
            tables = {t.id: t.row_count for t in app.main.query(DataTable)}
            assert tables == {"nodes": 0, "jobs": 0, "log": 0}
            assert not app.jobs and not app.projects and app.connection.view is None
            assert other.url in bar_text(app)

            await type_into(pilot, "#api-key", other_headers["x-api-key"])
            await type_into(pilot, "#api-secret", other_headers["x-secret-key"])
            await pilot.press("enter")
            await until(pilot, lambda: "quorum yes" in bar_text(app), 15, "the other node")
            await until(pilot, lambda: app.projects, 10, "the other node's projects")
            assert {p.name for p in app.projects.values()} == {"bee"}
            assert other.url in bar_text(app)
            assert app.main.query_one("#jobs", DataTable).row_count == 0


async def test_the_connected_member_killed_the_console_reads_from_another(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        first = cluster.by_id(1)
        source = source_for(first, create_credential(cluster.wait_leader()))
        app = create_console(source)
        try:
            async with app.run_test(size=SIZE) as pilot:

                def members() -> int:
                    return len(app.connection.view.members) if app.connection.view else 0

                await until(pilot, lambda: members() == 3, 20, "the three members")
                first.kill()
                await until(pilot, lambda: source.url != first.url, 20, "a move")
                await until(pilot, lambda: app.connection.view is not None, 20, "its view")
                now_reading = app.connection.view
                assert now_reading is not None and now_reading.node_id in (2, 3)
                assert source.url == cluster.by_id(now_reading.node_id).url
                assert f"moved here: {first.url} unreachable" in bar_text(app)
                nodes = app.main.query_one("#nodes", DataTable)
                await until(
                    pilot, lambda: cell(nodes, "1", "health") == "unreachable", 20, "node 1 down"
                )
        finally:
            source.close()


# -- 20,000 jobs: search, paging, the job page --------------------------------------

BULK_JOBS = 20_000
BULK_BATCH = 1_000
YEARLY = "0 0 1 1 *"
"""Never due while the test runs: the node has 20,000 jobs and nothing to fire."""


def bulk_jobs(node: NodeProcess, headers: dict[str, str], url: str) -> list[int]:
    """``BULK_JOBS`` jobs named ``bulk-00001``..., created ``BULK_BATCH`` per POST;
    their ids in order."""
    ids: list[int] = []
    with httpx.Client(base_url=node.api, headers=headers, timeout=60) as http:
        project = http.post("/projects", json={"name": "bulk"}).json()["data"]["id"]
        for start in range(0, BULK_JOBS, BULK_BATCH):
            body = [
                {
                    "project_id": project,
                    "spec": YEARLY,
                    "callback_url": url,
                    "name": f"bulk-{n:05d}",
                }
                for n in range(start + 1, start + BULK_BATCH + 1)
            ]
            answer = http.post("/jobs", json=body)
            answer.raise_for_status()
            ids.extend(job["id"] for job in answer.json()["data"])
    return ids


def jobs_title(app: ConsoleApp) -> str:
    return str(app.main.query_one("#jobs-panel").border_title)


async def test_search_and_paging_across_20000_jobs_and_the_job_page_after_a_run_now(
    tmp_path: Path,
) -> None:
    with run_receiver(tmp_path) as receiver, running_node(tmp_path / "node") as node:
        headers = create_credential(node)
        ids = bulk_jobs(node, headers, f"{receiver.url}/cb")
        assert len(ids) == BULK_JOBS
        source = source_for(node, headers)
        app = create_console(source)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: app.jobs_page.total == BULK_JOBS, 20, "first page")
                assert sorted(app.jobs) == ids[:500]
                assert f"jobs 1-500 of {BULK_JOBS}" in jobs_title(app)

                # `/` searches on the node: a job far beyond the first 500 by its name...
                target = ids[12_344]
                await pilot.press("slash", *"bulk-12345")
                await until(pilot, lambda: list(app.jobs) == [target], 15, "the name search")
                assert 'matching "bulk-12345" · jobs 1-1 of 1' in jobs_title(app)
                # ... and by its id, which the node's text search does not match.
                await pilot.press("ctrl+u", *str(ids[-1]))
                await until(pilot, lambda: ids[-1] in app.jobs, 15, "the id search")

                # Cleared, the pages walk to the last one with `]`.
                await pilot.press("escape")
                await until(pilot, lambda: app.jobs_page.total == BULK_JOBS, 15, "all again")
                app.main.query_one("#jobs", DataTable).focus()
                last = (BULK_JOBS - 1) // 500 * 500
                for offset in range(500, last + 1, 500):
                    await pilot.press("right_square_bracket")
                    await until(pilot, lambda o=offset: app.jobs_page.offset == o, 15, f"{offset}")
                assert sorted(app.jobs) == ids[last:]
                assert f"jobs {last + 1}-{BULK_JOBS} of {BULK_JOBS}" in jobs_title(app)
                await pilot.press("right_square_bracket")  # past the last: it stays
                await pilot.pause(0.2)
                assert app.jobs_offset == last and sorted(app.jobs) == ids[last:]
                await pilot.press("left_square_bracket")
                await until(pilot, lambda: app.jobs_page.offset == last - 500, 15, "back one")

                # The job page: counters, project, next five runs; after a run-now,
                # "last run" is the manual run the history shows on top.
                await pilot.press("slash", *"bulk-12345", "enter", "enter")
                await until(pilot, lambda: isinstance(app.screen, JobScreen), 10, "job page")
                summary = app.screen.query_one(JobSummary)
                await until(pilot, lambda: "01-01 00:00:00 +00:00" in text_of(summary), 10, "runs")
                assert "project  1 bulk" in text_of(summary)
                assert "runs  fired 0 · success 0 · failed 0 · missed 0" in text_of(summary)
                assert "last run  never" in text_of(summary)
                await pilot.press("x")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "confirm")
                await pilot.press("y")
                await until(pilot, lambda: "manual · success" in text_of(summary), 20, "the run")
                history = app.screen.query_one("#history", DataTable)
                [row] = list(history.rows)
                assert cell(history, row.value or "", "trigger") == "manual"
                when = cell(history, row.value or "", "scheduled")
                assert f"last run  {when} UTC · manual · success 200" in text_of(summary)
                await until(
                    pilot, lambda: "success 1 " in text_of(summary), 10, "the counter to move"
                )
        finally:
            source.close()


def text_of(summary: JobSummary) -> str:
    return str(summary.summary())
