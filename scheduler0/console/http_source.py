"""``ConsoleSource`` over a node's HTTP API, through ``scheduler0.client.ApiClient``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx

from scheduler0.client import ApiClient
from scheduler0.console.source import (
    ClusterView,
    Execution,
    Job,
    JobDraft,
    JobPage,
    Project,
    SignIn,
    search_terms,
)
from scheduler0.errors import BadRequest, NotFound
from scheduler0.terminal import printable

REQUEST_TIMEOUT_SECONDS = 2.0
"""A console refresh is about a second; a node slower than this is shown as failing."""

JOBS_PAGE_LIMIT = 500
"""The jobs table shows one page of this many (by id); its title says which of how many."""


@dataclass(frozen=True)
class Credentials:
    """A client key pair, or the operator's HTTP Basic username and password;
    and the CA bundle that verifies an https node (TLSCAFile; None = the
    system store)."""

    api_key: str | None = None
    api_secret: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None


class HttpSource:
    """Thread-safe: workers call it concurrently. ``switch`` swaps the client; the
    old one keeps serving requests already in flight and is closed by ``close``."""

    def __init__(self, node_url: str, credentials: Credentials) -> None:
        self._credentials = credentials
        self._lock = threading.Lock()
        self._retired: list[ApiClient] = []
        self._client = self._connect(node_url)

    def _connect(self, node_url: str) -> ApiClient:
        """A client for ``node_url``; ``BadRequest`` for a URL that is not one
        (typed in the switch dialog)."""
        c = self._credentials
        try:
            return ApiClient(
                node_url,
                api_key=c.api_key,
                api_secret=c.api_secret,
                username=c.username,
                password=c.password,
                timeout=REQUEST_TIMEOUT_SECONDS,
                ca_file=c.ca_file,
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise BadRequest(f"not a node URL: {printable(node_url)} ({exc})") from None

    @property
    def url(self) -> str:
        return self._client.base_url

    def _api(self) -> ApiClient:
        with self._lock:
            return self._client

    def cluster(self) -> ClusterView:
        return ClusterView.from_api(self._api().get("/cluster"))

    def projects(self) -> list[Project]:
        data = self._api().get("/projects", limit=1000)
        return [Project.from_api(p) for p in data.get("projects", [])]

    def create_project(self, name: str, description: str) -> Project:
        body = {"name": name, "description": description}
        return Project.from_api(self._api().post("/projects", body))

    def jobs(self, project: int | None, text: str, offset: int = 0) -> JobPage:
        """The search runs on the node (``GET /jobs?label=&q=&offset=``): it
        finds jobs beyond the first page, and the total is of the jobs it found."""
        labels, q = search_terms(text)
        data = self._api().get(
            "/jobs",
            projectId=project,
            label=[f"{k}={v}" for k, v in labels] or None,
            q=q or None,
            limit=JOBS_PAGE_LIMIT,
            offset=offset or None,
        )
        jobs = tuple(Job.from_api(j) for j in data.get("jobs", []))
        total, start = int(data.get("total", 0)), int(data.get("offset", offset))
        by_id = self._job_by_id(project, text) if start == 0 else None
        if by_id is not None and by_id.id not in {job.id for job in jobs}:
            jobs, total = (by_id, *jobs), total + 1
        return JobPage(jobs, total, start, JOBS_PAGE_LIMIT)

    def _job_by_id(self, project: int | None, text: str) -> Job | None:
        """A search that is one number also finds the job with that id (first,
        on the first page): the node's search matches names, URLs and specs only."""
        word = text.strip()
        if not word.isdigit() or len(word) > 18:
            return None
        try:
            job = Job.from_api(self._api().get(f"/jobs/{int(word)}"))
        except NotFound:
            return None
        return job if project in (None, job.project_id) else None

    def executions(
        self,
        job: int | None,
        state: str | None,
        limit: int = 50,
        *,
        trigger: str | None = None,
        offset: int = 0,
    ) -> list[Execution]:
        data = self._api().get(
            "/executions",
            jobId=job,
            state=state,
            trigger=trigger,
            limit=limit,
            offset=offset or None,
        )
        return [Execution.from_api(e) for e in data.get("executions", [])]

    def preview_schedule(self, spec: str, timezone: str, count: int) -> list[str]:
        params = {"spec": spec, "timezone": timezone.strip() or "UTC", "count": count}
        data = self._api().get("/schedules/preview", **params)
        return [str(run["local"]) for run in data.get("runs", [])]

    def create_job(self, draft: JobDraft) -> Job:
        return Job.from_api(_one(self._api().post("/jobs", draft.to_body())))

    def update_job(self, job_id: int, draft: JobDraft) -> Job:
        body = draft.to_body(with_project=False)
        return Job.from_api(self._api().put(f"/jobs/{job_id}", body))

    def delete_job(self, job_id: int) -> None:
        self._api().delete(f"/jobs/{job_id}")

    def pause_job(self, job_id: int, note: str | None = None) -> Job:
        return Job.from_api(self._api().post(f"/jobs/{job_id}/pause", _note_body(note)))

    def resume_job(self, job_id: int, note: str | None = None) -> Job:
        return Job.from_api(self._api().post(f"/jobs/{job_id}/resume", _note_body(note)))

    def run_job(self, job_id: int) -> None:
        self._api().post(f"/jobs/{job_id}/run")

    def backfill_job(self, job_id: int, start: str, end: str) -> dict[str, Any]:
        answer = self._api().post(f"/jobs/{job_id}/backfill", {"from": start, "to": end})
        return dict(answer) if isinstance(answer, dict) else {}

    def switch(self, node_url: str) -> None:
        fresh = self._connect(node_url)
        with self._lock:
            self._retired.append(self._client)
            self._client = fresh

    def sign_in(self, credentials: SignIn) -> None:
        """New credentials (the CA bundle stays), on the node connected to."""
        pair = bool(credentials.api_key and credentials.api_secret)
        self._credentials = Credentials(
            api_key=credentials.api_key if pair else None,
            api_secret=credentials.api_secret if pair else None,
            username=None if pair else credentials.username,
            password=None if pair else credentials.password,
            ca_file=self._credentials.ca_file,
        )
        self.switch(self.url)

    def close(self) -> None:
        with self._lock:
            clients = [*self._retired, self._client]
            self._retired = []
        for client in clients:
            client.close()


def _note_body(note: str | None) -> dict[str, str] | None:
    """No body without a note: the request is then exactly the plain one."""
    return {"note": note} if note else None


def _one(data: Any) -> dict[str, Any]:
    """``POST /jobs`` answers an object for an object; tolerate a one-item list."""
    if isinstance(data, list):
        data = data[0]
    result: dict[str, Any] = data
    return result
