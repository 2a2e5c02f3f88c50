"""The console driven by keys against a real node process and a real receiver:
create a job through the form (a bad spec first), see it and its executions,
pause it, delete it; kill the node and see the bar say so while the app keeps
running; restart it and see the console reconnect by itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label

from scheduler0.console.app import ConsoleApp, create_console
from scheduler0.console.forms import JobForm
from scheduler0.console.http_source import Credentials, HttpSource
from scheduler0.console.screens import ConfirmScreen, HelpScreen
from scheduler0.console.widgets import ClusterBar
from tests.support.nodes import create_credential, running_node
from tests.support.receiver import run_receiver

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
                await pilot.press("ctrl+s")
                await until(pilot, lambda: not isinstance(app.screen, JobForm), 10, "form closed")
                await until(pilot, lambda: jobs.row_count == 1, 10, "the job row")
                job_id = app.jobs[next(iter(app.jobs))].id
                key = str(job_id)
                assert cell(jobs, key, "spec") == "@every 1s"

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

                # Pause, with a confirmation.
                await pilot.press("p")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "confirm")
                await pilot.press("y")
                await until(pilot, lambda: cell(jobs, key, "paused") == "yes", 10, "paused")

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
