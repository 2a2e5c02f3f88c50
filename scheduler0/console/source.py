"""What the console shows, and the seam it reads it through.

The records are frozen and built from the API's JSON at the edge
(``from_api``), so widgets never index raw dicts, and every string shown
comes with its control and bidi characters escaped (``scheduler0/terminal.py``;
a job's ``data`` is escaped where it is shown, as the edit form sends it back).
``ConsoleSource`` is the one interface the app talks to: ``HttpSource`` speaks
to a node, tests pass a fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from scheduler0.models import ExecutionOut, ExecutionState, ExecutionTrigger, JobOut, ProjectOut
from scheduler0.terminal import printable

EXECUTION_STATES = tuple(s for s in ExecutionState if s is not ExecutionState.PENDING)
"""The states the execution log can be filtered by."""

EXECUTION_TRIGGERS = tuple(ExecutionTrigger)
"""The triggers the execution log can be filtered by."""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _str(value: Any) -> str | None:
    return None if value is None else printable(str(value))


@dataclass(frozen=True)
class Member:
    """One node of the cluster as ``GET /cluster`` reports it."""

    node_id: int
    address: str
    role: str
    reachable: bool
    over_memory: bool = False
    last_contact: float | None = None
    buckets_owned: int | None = None
    jobs_owned: int | None = None
    queue_depth: int | None = None
    in_flight: int | None = None
    fire_lag_p99_seconds: float | None = None
    delivery_lag_p99_seconds: float | None = None
    """Slot to completed callback, the lag a receiver sees."""
    halted: bool = False
    low_disk: bool = False
    error: str | None = None
    fired: int | None = None
    """Fires this node has proposed since it started (a counter: the console
    draws its rate)."""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Member:
        return cls(
            node_id=int(data["node_id"]),
            address=printable(str(data.get("address", ""))),
            role=printable(str(data.get("role", "?"))),
            reachable=bool(data.get("reachable")),
            over_memory=bool(data.get("over_memory")),
            last_contact=_float(data.get("last_contact")),
            buckets_owned=_int(data.get("buckets_owned")),
            jobs_owned=_int(data.get("jobs_owned")),
            queue_depth=_int(data.get("queue_depth")),
            in_flight=_int(data.get("in_flight")),
            fire_lag_p99_seconds=_float(data.get("fire_lag_p99_seconds")),
            delivery_lag_p99_seconds=_float(data.get("delivery_lag_p99_seconds")),
            halted=bool(data.get("halted")),
            low_disk=bool(data.get("low_disk")),
            error=_str(data.get("error")),
            fired=_int(data.get("fired")),
        )


@dataclass(frozen=True)
class ClusterView:
    """The connected node's view of the cluster."""

    node_id: int
    leader_node_id: int | None
    term: int | None
    has_quorum: bool
    epoch: int | None
    commit_index: int | None = None
    applied_index: int | None = None
    members: tuple[Member, ...] = ()

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ClusterView:
        return cls(
            node_id=int(data["node_id"]),
            leader_node_id=_int(data.get("leader_node_id")),
            term=_int(data.get("term")),
            has_quorum=bool(data.get("has_quorum")),
            epoch=_int(data.get("epoch")),
            commit_index=_int(data.get("commit_index")),
            applied_index=_int(data.get("applied_index")),
            members=tuple(Member.from_api(m) for m in data.get("members", [])),
        )


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    description: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Project:
        out = ProjectOut.model_validate(data)
        return cls(out.id, printable(out.name), printable(out.description or ""))


@dataclass(frozen=True)
class JobCounters:
    """A job's run counters as the node keeps them (``fired_count`` ...)."""

    fired: int = 0
    success: int = 0
    failed: int = 0
    missed: int = 0


@dataclass(frozen=True)
class Job:
    id: int
    project_id: int
    spec: str
    timezone: str = "UTC"
    callback_url: str = ""
    data: str = ""
    paused: bool = False
    next_run_at: str | None = None
    last_state: str | None = None
    last_status_code: int | None = None
    last_execution_date: str | None = None
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    status: str = "active"
    """active, paused or completed (no run left: past end_at or max_runs)."""
    status_note: str | None = None
    policies: tuple[tuple[str, str], ...] = ()
    """The policies set away from their defaults, as ``(field, text)`` in
    ``POLICY_FIELDS`` order, as the form edits them (``retry.attempts``...)."""
    counters: JobCounters | None = None
    """What the node counted of its runs (None: a source that does not say)."""

    @property
    def labels_text(self) -> str:
        """``key=value`` pairs separated by spaces, as the form edits them."""
        return " ".join(f"{k}={v}" for k, v in self.labels)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Job:
        out = JobOut.model_validate(data)
        return cls(
            id=out.id,
            project_id=out.project_id,
            spec=printable(out.spec),
            timezone=printable(out.timezone or "UTC"),
            callback_url=printable(out.callback_url or ""),
            data=str(out.data or ""),
            paused=out.paused,
            next_run_at=out.next_run_at,
            last_state=out.last_state,
            last_status_code=out.last_status_code,
            last_execution_date=out.last_execution_date,
            name=None if out.name is None else printable(out.name),
            labels=tuple((printable(k), printable(v)) for k, v in out.labels.items()),
            status=out.status,
            status_note=None if out.status_note is None else printable(out.status_note),
            policies=policy_texts(out),
            counters=JobCounters(
                out.fired_count, out.success_count, out.failed_count, out.missed_count
            ),
        )

    def matches(self, text: str) -> bool:
        """The ``/`` search as the node answers it (``JobSearch``), for sources
        without a node: every ``key=value`` word a label, the rest a
        case-insensitive substring of name, callback URL or spec; a search that
        is one number also finds the job with that id."""
        if text.strip() == str(self.id):
            return True
        labels, q = search_terms(text)
        if any(pair not in self.labels for pair in labels):
            return False
        haystack = (self.name or "", self.callback_url, self.spec)
        return not q or any(q.lower() in part.lower() for part in haystack)


def search_terms(text: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """The ``/`` search: ``key=value`` words are labels (all must match), the
    other words, joined by one space, are the text (``GET /jobs?label=&q=``)."""
    labels: list[tuple[str, str]] = []
    words: list[str] = []
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep and key:
            labels.append((key, value))
        else:
            words.append(word)
    return tuple(labels), " ".join(words)


def parse_labels(text: str) -> dict[str, str]:
    """The form's labels field: ``key=value`` words (a word without ``=`` is a
    key with an empty value, which the node refuses by name if it must)."""
    out: dict[str, str] = {}
    for word in text.split():
        key, _, value = word.partition("=")
        out[key] = value
    return out


POLICY_FIELDS: tuple[str, ...] = (
    "overlap",
    "catchup",
    "catchup_window_seconds",
    "retry.attempts",
    "retry.initial_seconds",
    "retry.multiplier",
    "retry.cap_seconds",
    "retry.jitter",
    "timeout_seconds",
    "start_at",
    "end_at",
    "jitter_seconds",
    "max_runs",
    "pause_after_failures",
)
"""The job form's policy fields, named as the node names them in its errors
(``retry.attempts`` is ``attempts`` of the ``retry`` object)."""

POLICY_DEFAULTS: dict[str, Any] = {"overlap": "allow", "catchup": "latest", "jitter_seconds": 0}
"""What the node shows for a policy left at its default (None for the others)."""


def _number_text(value: Any) -> str:
    """``30`` for 30.0, ``0.5`` for 0.5: what the user would have typed."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def policy_texts(out: JobOut) -> tuple[tuple[str, str], ...]:
    """The policies ``out`` sets away from their defaults, as form texts."""
    retry = out.retry.model_dump() if out.retry is not None else {}
    texts = []
    for name in POLICY_FIELDS:
        _, _, sub = name.partition(".")
        value = retry.get(sub) if sub else getattr(out, name)
        if value is None or (not sub and value == POLICY_DEFAULTS.get(name)):
            continue
        text = value if isinstance(value, str) else _number_text(value)
        texts.append((name, printable(text)))
    return tuple(texts)


def _policy_value(text: str) -> Any:
    """A number when the text is one, else the text itself: the node names a
    field whose value it refuses (``end_at: must be an RFC 3339 time ...``)."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def policy_body(texts: dict[str, str], had: frozenset[str]) -> dict[str, Any]:
    """The API fields of the form's policy ``texts``: each one given, and null
    for a blank one the job ``had`` (an edit returns it to its default);
    ``retry`` as one object of the fields given (it replaces the job's), null
    when all are blank and the job had one."""
    body: dict[str, Any] = {}
    retry: dict[str, Any] = {}
    for name in POLICY_FIELDS:
        text = texts.get(name, "").strip()
        _, _, sub = name.partition(".")
        if sub and text:
            retry[sub] = _policy_value(text)
        elif sub:
            continue
        elif text:
            body[name] = text if name in ("overlap", "catchup") else _policy_value(text)
        elif name in had:
            body[name] = None
    if retry:
        body["retry"] = retry
    elif any(name.startswith("retry.") for name in had):
        body["retry"] = None
    return body


@dataclass(frozen=True)
class JobPage:
    """The jobs shown (after filtering) and how many the node holds for the project."""

    jobs: tuple[Job, ...]
    total: int
    offset: int = 0
    """Where the first of ``jobs`` sits among the ``total`` found."""
    limit: int = 0
    """The page size the source asked for (0: every job found is on this page)."""

    @property
    def size(self) -> int:
        return self.limit or max(1, len(self.jobs))

    @property
    def last_page_offset(self) -> int:
        return max(0, (self.total - 1) // self.size * self.size)

    @property
    def span(self) -> str:
        """``jobs 501-1000 of 20005``, or ``no jobs``."""
        if not self.jobs:
            return f"no jobs of {self.total}" if self.total else "no jobs"
        return f"jobs {self.offset + 1}-{self.offset + len(self.jobs)} of {self.total}"


@dataclass(frozen=True)
class Execution:
    id: int
    execution_id: str
    job_id: int
    scheduled_at: str
    state: str
    status_code: int | None = None
    attempts: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    node_id: int | None = None
    trigger: str = "schedule"
    updated_at: str | None = None
    """When its latest state was recorded: for a finished run, when its result was."""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Execution:
        out = ExecutionOut.model_validate(data)
        return cls(
            id=out.id,
            execution_id=printable(out.execution_id),
            job_id=out.job_id,
            scheduled_at=printable(out.scheduled_at),
            state=str(out.state),
            status_code=out.status_code,
            attempts=out.attempts,
            latency_ms=out.latency_ms,
            error=None if out.error is None else printable(out.error),
            node_id=out.node_id,
            trigger=str(out.trigger),
            updated_at=out.updated_at,
        )


@dataclass(frozen=True)
class SignIn:
    """What the credentials prompt collects: a client key pair, or the
    operator's username and password (the other pair blank)."""

    api_key: str = ""
    api_secret: str = ""
    username: str = ""
    password: str = ""

    @property
    def complete(self) -> bool:
        return bool(self.api_key and self.api_secret) or bool(self.username and self.password)


@dataclass(frozen=True)
class JobDraft:
    """What the job form sends. Blank optional fields are left out so the node's
    defaults (``UTC``, no data) apply and its validation names the field."""

    spec: str
    callback_url: str
    project_id: int | None = None
    timezone: str = ""
    data: str = ""
    name: str = ""
    labels: str = ""
    """``key=value`` words (``parse_labels``)."""
    policies: tuple[tuple[str, str], ...] = ()
    """The form's policy fields, ``(field, text)``; blank ones are not sent."""
    had: frozenset[str] = frozenset()
    """The policy fields the edited job had set: blank now, they are sent as null."""

    def to_body(self, *, with_project: bool = True) -> dict[str, Any]:
        """A new job (``with_project``) leaves a blank name and labels out; a
        change sends them, blank meaning none (the form shows them all)."""
        body: dict[str, Any] = {"spec": self.spec, "callback_url": self.callback_url}
        if with_project:
            body["project_id"] = self.project_id
        if self.timezone.strip():
            body["timezone"] = self.timezone.strip()
        if self.data:
            body["data"] = self.data
        name, labels = self.name.strip(), parse_labels(self.labels)
        if name or not with_project:
            body["name"] = name or None
        if labels or not with_project:
            body["labels"] = labels
        body.update(policy_body(dict(self.policies), self.had))
        return body


class ConsoleSource(Protocol):
    """Everything the console reads and changes. Implementations block (the app
    calls them from worker threads), answer within a couple of seconds, and raise
    ``scheduler0.errors.Scheduler0Error`` subclasses: ``Unreachable`` when the
    node does not answer, ``ValidationFailed`` (with ``details`` naming fields)
    for invalid input, anything else for a refusal. They are called from several
    threads at once."""

    @property
    def url(self) -> str:
        """Base URL of the node currently connected to."""
        ...

    def cluster(self) -> ClusterView:
        """``GET /cluster`` on the connected node."""
        ...

    def projects(self) -> list[Project]: ...

    def create_project(self, name: str, description: str) -> Project: ...

    def jobs(self, project: int | None, text: str, offset: int = 0) -> JobPage:
        """Jobs of ``project`` (all when None) that the search ``text`` finds
        (``search_terms``), searched on the node, with their total: one page
        of them, from the ``offset``-th found (by id)."""
        ...

    def executions(
        self,
        job: int | None,
        state: str | None,
        limit: int = 50,
        *,
        trigger: str | None = None,
        offset: int = 0,
    ) -> list[Execution]:
        """Newest first, across the cluster; ``job``/``state``/``trigger``
        narrow it; ``offset`` skips that many newer rows (older pages)."""
        ...

    def preview_schedule(self, spec: str, timezone: str, count: int) -> list[str]:
        """``GET /schedules/preview``: the next ``count`` runs of ``spec`` as local
        RFC 3339 times (with their offsets) in ``timezone`` (blank: UTC), or
        ``ValidationFailed`` naming the field, as creating the job would."""
        ...

    def create_job(self, draft: JobDraft) -> Job: ...

    def update_job(self, job_id: int, draft: JobDraft) -> Job: ...

    def delete_job(self, job_id: int) -> None: ...

    def pause_job(self, job_id: int, note: str | None = None) -> Job:
        """Pause; ``note`` (optional) is shown as the job's status_note."""
        ...

    def resume_job(self, job_id: int, note: str | None = None) -> Job: ...

    def run_job(self, job_id: int) -> None:
        """Fire the job now, once, outside its schedule."""
        ...

    def backfill_job(self, job_id: int, start: str, end: str) -> dict[str, Any]:
        """Fire the job's past slots from ``start`` to ``end`` (RFC 3339) once
        each; the node's answer (``requested``, ``queued``, ...)."""
        ...

    def switch(self, node_url: str) -> None:
        """Talk to another node from now on, with the same credentials. No I/O."""
        ...

    def sign_in(self, credentials: SignIn) -> None:
        """Use these credentials from now on, on the same node. No I/O."""
        ...

    def close(self) -> None: ...
