"""The job page's summary: what the node counted of the job's runs, its
project by name, its last run as the history shows it, and its next five runs.

"last run" is the newest row of the job's history, whatever made it (the
schedule, a manual run-now, a backfill). The job's own ``last_execution_date``
and ``last_state`` follow its *scheduled* fires only (they are what the next
callback body carries): a manual run is keyed apart from the schedule and
leaves them as they were, which is how the page once said one thing on its
"last run" line and another on the history right below it. The job's fields
are the fallback while the history has not landed or is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import Static

from scheduler0.console import format as fmt
from scheduler0.console.source import Execution, Job, Project
from scheduler0.console.widgets import Clock

NEXT_RUNS = 5
"""How many upcoming runs the page lists."""


def run_time(local: str) -> str:
    """``MM-DD HH:MM:SS +HH:MM`` of a preview's local RFC 3339 time (as given if not one)."""
    try:
        moment = datetime.fromisoformat(local)
    except ValueError:
        return local
    offset = moment.strftime("%z")
    zone = f" {offset[:3]}:{offset[3:]}" if offset else ""
    return moment.strftime("%m-%d %H:%M:%S") + zone


class JobSummary(Static):
    """Fed by the app: ``show_job`` (every jobs refresh), ``show_history``
    (every history refresh) and ``show_runs`` (whenever ``wanted_runs`` says
    the spec or timezone shown changed)."""

    DEFAULT_CSS = "JobSummary { height: auto; padding: 0 1; }"

    def __init__(self, job: Job, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.clock = clock
        self.project: Project | None = None
        self.newest: Execution | None = None
        self.history_landed = False
        self.runs: list[str] = []
        self.runs_for: tuple[str, str] | None = None
        self.runs_error = ""

    def on_mount(self) -> None:
        self.update(self.summary())

    def show_job(self, job: Job, project: Project | None) -> None:
        self.job, self.project = job, project or self.project
        self.update(self.summary())

    def show_history(self, executions: Sequence[Execution]) -> None:
        self.newest = executions[0] if executions else None
        self.history_landed = True
        self.update(self.summary())

    def wanted_runs(self) -> tuple[str, str] | None:
        """The (spec, timezone) whose next runs to fetch, or None when shown."""
        wanted = (self.job.spec, self.job.timezone)
        return None if wanted == self.runs_for else wanted

    def show_runs(self, spec: str, timezone: str, runs: list[str], error: str = "") -> None:
        self.runs_for, self.runs, self.runs_error = (spec, timezone), runs, error
        self.update(self.summary())

    def summary(self) -> Text:
        job = self.job
        project = f"{job.project_id} {self.project.name}" if self.project else str(job.project_id)
        rows: list[tuple[str, Text]] = [
            ("project", Text(project)),
            ("runs", Text(self._counters())),
            ("last run", self._last_run()),
            (f"next {NEXT_RUNS}", Text(self._next_runs())),
        ]
        text = Text()
        for n, (name, value) in enumerate(rows):
            text.append(f"{name:>10}  ", style="bold")
            text.append_text(value)
            if n < len(rows) - 1:
                text.append("\n")
        return text

    def _counters(self) -> str:
        c = self.job.counters
        if c is None:
            return "-"
        return f"fired {c.fired} · success {c.success} · failed {c.failed} · missed {c.missed}"

    def _last_run(self) -> Text:
        now, e = self.clock(), self.newest
        if e is not None:
            text = Text(f"{fmt.clock_time(e.scheduled_at, now)} UTC · {e.trigger} · ")
            text.append_text(fmt.state_text(e.state, e.status_code))
            return text
        job = self.job
        if job.last_execution_date is None:
            return Text("never" if self.history_landed else "-")
        text = Text(f"{fmt.clock_time(job.last_execution_date, now)} UTC · schedule · ")
        text.append_text(fmt.state_text(job.last_state, job.last_status_code))
        return text

    def _next_runs(self) -> str:
        job = self.job
        if self.runs_error:
            return f"cannot preview: {self.runs_error}"
        if self.runs_for != (job.spec, job.timezone):
            return "…"
        if not job.paused and job.next_run_at is None:
            return "none: the job has no run left"
        runs = "  ".join(run_time(run) for run in self.runs[:NEXT_RUNS]) or "none"
        return f"(paused) {runs}" if job.paused else runs
