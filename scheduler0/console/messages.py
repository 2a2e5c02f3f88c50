"""What workers tell the app. Workers only fetch and post these; handlers alone
touch widgets. ``what`` names the fetch (``cluster``, ``jobs``, ``log``,
``history``, ``projects``) so the app knows which one is no longer in flight."""

from __future__ import annotations

from textual.message import Message

from scheduler0.console.source import ClusterView, Execution, Job, JobPage, Project
from scheduler0.errors import Scheduler0Error


class Fetched(Message):
    """Base of a successful read; ``what`` names it, ``generation`` the
    connection it was asked on (the app drops answers of an older one)."""

    what = ""
    generation = 0


class ClusterRefreshed(Fetched):
    what = "cluster"

    def __init__(self, view: ClusterView) -> None:
        super().__init__()
        self.view = view


class JobsRefreshed(Fetched):
    what = "jobs"

    def __init__(self, page: JobPage, project: int | None, text: str, offset: int = 0) -> None:
        super().__init__()
        self.page = page
        self.project = project
        self.text = text
        self.offset = offset


class LogRefreshed(Fetched):
    what = "log"

    def __init__(
        self,
        executions: list[Execution],
        job: int | None,
        state: str | None,
        trigger: str | None = None,
        offset: int = 0,
    ) -> None:
        super().__init__()
        self.executions = executions
        self.job = job
        self.state = state
        self.trigger = trigger
        self.offset = offset


class HistoryRefreshed(Fetched):
    what = "history"

    def __init__(self, job_id: int, executions: list[Execution]) -> None:
        super().__init__()
        self.job_id = job_id
        self.executions = executions


class RunsPreviewed(Fetched):
    """The next runs of an open job's spec (``GET /schedules/preview``)."""

    what = "runs"

    def __init__(self, job_id: int, spec: str, timezone: str, runs: list[str]) -> None:
        super().__init__()
        self.job_id = job_id
        self.spec = spec
        self.timezone = timezone
        self.runs = runs


class ProjectsRefreshed(Fetched):
    what = "projects"

    def __init__(self, projects: list[Project]) -> None:
        super().__init__()
        self.projects = projects


class FetchFailed(Message):
    generation = 0

    def __init__(self, what: str, error: Scheduler0Error) -> None:
        super().__init__()
        self.what = what
        self.error = error


class JobActionSucceeded(Message):
    """A confirmed pause/resume/run/delete went through."""

    def __init__(self, verb: str, job_id: int, job: Job | None) -> None:
        super().__init__()
        self.verb = verb
        self.job_id = job_id
        self.job = job


class JobActionFailed(Message):
    def __init__(self, verb: str, job_id: int, error: Scheduler0Error) -> None:
        super().__init__()
        self.verb = verb
        self.job_id = job_id
        self.error = error
