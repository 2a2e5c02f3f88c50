"""The jobs this node fires: every active job of the buckets the replicated
assignment gives it, with a heap of their next due slots.

All of it is derived from replicated state and refreshed from the state
machine's change notifications (``on_change``, on the apply thread): new
jobs come with the items of the command that created them (``CreatedJobs``),
a job change marks the job dirty (read again), an assignment change or a
reset (snapshot load) asks for the buckets to be compared or everything to be
reloaded. ``refresh``
(on the event loop, once per tick) does the work. Nothing here decides
ownership or proposes anything.

Heap entries are ``(due, job id, version)``: ``due`` is the job's next slot
plus its jitter offset (``policy.jitter_offset``; 0 for most jobs). A job reloaded from state gets a
new version, which turns its older entries stale; a removed job has none. Stale
entries are skipped when popped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from scheduler0.daemon.scheduling.cron import NEVER, Schedule, resume_slot
from scheduler0.daemon.scheduling.policy import (
    DEFAULT_POLICY,
    FirePolicy,
    JobPolicy,
    jitter_offset,
    job_schedule,
    policy_of,
)
from scheduler0.daemon.state.apply import CreatedJobs
from scheduler0.daemon.state.machine import AssignmentView
from scheduler0.daemon.state.queries import SCHEDULING_CHUNK, Queries
from scheduler0.daemon.state.schema import bucket_of

log = logging.getLogger(__name__)

DueEntry = tuple[int, int, int]
"""A heap entry: (due time, job id, version)."""

MAX_CREATED_HELD = 100_000
"""New jobs held (their commands' items) until the next refresh loads them;
past it, or past ``MAX_CREATED_HELD_BYTES`` of their data (its JSON text's
length), as when a refresh is long in coming, they are marked changed instead
and read back from state: memory stays bounded. Nothing is held while a full
reload is pending (a start, a snapshot loaded): it reads them."""

MAX_CREATED_HELD_BYTES = 64 * 2**20

GAIN_PER_REFRESH = 10_000
"""Jobs of newly gained buckets loaded per refresh (one scheduler tick), and
so of every bucket at a full reload (the first refresh after a start, a
snapshot loaded). A bucket move hands a node half the jobs of the cluster at
once: at 1,000,000 jobs, loading them in one go held the event loop (and,
through the GIL, the raft thread) for 20-40 s; in steps the loop answers and
fires the jobs it already has between them."""

GAIN_FIRST_SECONDS = 60
"""A gain (and a full reload) loads first the jobs whose kept next run is
less than this many seconds away, already past or unknown, soonest first;
the rest follow in id order. In id order alone, a job due in the first
seconds waited for every job of lower id: at 1,000,000 jobs a node loads
its 500,000 in 50 steps, 3-6 s, and every job of the last steps due
meanwhile fired that late (a cold restart had every job back on its grid
4-10 s after the last node was ready). The window is ten times such a load,
so no job of the rest falls due before its step."""

GAIN_FIRST_MAX = 100_000
"""At most this many jobs a gain loads first (after a long outage every job
is past due: the rest come in id order, as before). Bounds the ids held."""


class Parked(NamedTuple):
    """In place of a job's ``PayloadHead`` while its destination's backlog is
    full (``Dispatcher``): what it takes to record its fires refused without
    the head's bytes (a hung receiver's jobs kept 20 KB each for nothing)."""

    size: int
    """Bytes of the head it stands for: the room a fire of the job needs."""
    callback_url: str
    secret: str
    method: str


PayloadHead = tuple[bytes, str, str, FirePolicy | None, str]
"""A job's callback item up to its execution id, URL and signing secret
(``callback_body.payload_head``), its retry/timeout/overlap policies
(``policy.fire_policy_of``; None for a job without any) and the HTTP method
of its callbacks (an executor's; ``POST`` for every other job)."""


class OwnedJob:
    """One owned job. ``pending``: popped and proposed, outcome not in yet
    (it is not on the heap meanwhile)."""

    __slots__ = (
        "check_senders",
        "id",
        "last_fired",
        "next_slot",
        "pending",
        "policy",
        "revision",
        "runs_left",
        "schedule",
        "version",
    )

    def __init__(
        self,
        job_id: int,
        schedule: Schedule,
        last_fired: int | None,
        version: int,
        revision: int = 0,
        policy: JobPolicy = DEFAULT_POLICY,
        runs_left: int | None = None,
    ):
        self.id = job_id
        self.schedule = schedule
        """Its grid, bounded by its ``start_at``/``end_at``."""
        self.last_fired = last_fired
        self.version = version
        self.revision = revision
        """The job's replicated schedule revision when loaded (``SlotsFired.revisions``)."""
        self.policy = policy
        """``DEFAULT_POLICY`` itself for a job without policies (the fast path tests ``is``)."""
        self.runs_left = runs_left
        """Scheduled runs its ``max_runs`` still allows (None: no limit)."""
        self.next_slot = 0
        self.pending = False
        self.check_senders = True
        """Loaded from state: another node (or this one before a restart) may
        still be sending one of its executions. A job with an overlap policy
        looks in state at its next fires (``Firing``) until none is."""

    def due_at(self, slot: int) -> int:
        """When ``slot`` is due: the slot itself, plus the job's jitter offset."""
        jitter = self.policy.jitter_seconds
        return slot + jitter_offset(self.id, slot, jitter) if jitter else slot


class OwnedJobs:
    """The owned set: ``buckets``, their ``jobs``, the due-time heap, and the
    ``payloads`` cache (per owned job, its ``PayloadHead``; filled by the
    dispatcher, dropped here whenever the job changes or its bucket moves).

    ``jobs``, ``buckets``, ``epoch`` and ``payloads`` are read by the other
    parts; only this class changes the set (``payloads`` is also filled in)."""

    def __init__(
        self,
        *,
        node_id: int,
        machine: AssignmentView,
        queries: Queries,
        fire_ahead: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self._clock = clock
        self._ahead = fire_ahead
        """A job without policies is decided this long before its slot; one
        with policies when it is due. Each kind has a heap of its own, so a job
        with policies is not popped (and pushed back) ahead of its time."""
        self._machine = machine
        self._queries = queries
        self.jobs: dict[int, OwnedJob] = {}
        self._heap: list[DueEntry] = []
        """Jobs without policies, by due time (their slot)."""
        self._policy_heap: list[DueEntry] = []
        """Jobs with policies, by due time (their slot plus jitter)."""
        self._version = 0
        self.epoch = -1
        """The assignment epoch as of the last refresh (stamped on proposals)."""
        self.buckets: frozenset[int] = frozenset()
        self.payloads: dict[int, PayloadHead | Parked] = {}
        self._lock = threading.Lock()
        self._dirty: set[int] = set()
        self._reload_all = True
        self._reassigned = False
        self._gaining: Iterator[dict[str, Any]] | None = None
        """Rows of gained buckets still to load (``GAIN_PER_REFRESH`` a refresh)."""
        self._gain_skip: set[int] = set()
        """Jobs re-read as changed while a gain was loading: its rows of them,
        read earlier, may be older and are skipped."""
        self._created: list[CreatedJobs] = []
        """New jobs to load from the commands that created them (not re-read),
        if no assignment change came between their creation and the refresh."""
        self._created_held = 0
        self._created_bytes = 0

    # -- what changed (apply thread, or outcome handlers) ------------------------------

    def on_change(self, kind: str, detail: Any) -> None:
        """A state machine change notification; any thread."""
        with self._lock:
            if kind == "jobs":
                self._dirty.update(detail)
            elif kind == "jobs_created":
                if self._reload_all:
                    pass  # the full reload pending reads them with the rest
                elif self._reassigned or not self._hold(detail):
                    self._dirty.update(detail.ids())  # read back from state
            elif kind == "assignment":
                self._reassigned = True
            elif kind == "reset":
                self._reload_all = True

    def _hold(self, created: CreatedJobs) -> bool:
        """Keep ``created`` for the next refresh, if what is held stays within
        ``MAX_CREATED_HELD`` jobs and ``MAX_CREATED_HELD_BYTES`` of their data."""
        size = sum(len(job.get("data") or "") for job in created.jobs)
        if (
            self._created_held + len(created.jobs) > MAX_CREATED_HELD
            or self._created_bytes + size > MAX_CREATED_HELD_BYTES
        ):
            return False
        self._created.append(created)
        self._created_held += len(created.jobs)
        self._created_bytes += size
        return True

    def invalidate(self, job_ids: Iterable[int], *, reload_all: bool = False) -> None:
        """Re-read ``job_ids`` from state at the next refresh (and, with
        ``reload_all``, everything)."""
        with self._lock:
            self._dirty.update(job_ids)
            if reload_all:
                self._reload_all = True

    # -- keeping in step (event loop) ----------------------------------------------------

    def refresh(self, on_reload: Callable[[], None] | None = None) -> None:
        """Apply what changed since the last refresh. After a full reload (the
        first refresh, a reset, an ambiguous fire) has begun, ``on_reload`` is
        called (its first ``GAIN_PER_REFRESH`` jobs are loaded by then)."""
        with self._lock:
            reload_all, self._reload_all = self._reload_all, False
            reassigned, self._reassigned = self._reassigned, False
            dirty, self._dirty = self._dirty, set()
            created, self._created = self._created, []
            self._created_held = self._created_bytes = 0
        if reload_all or reassigned:
            # Held jobs were created before the change: in a bucket that
            # moved (even away and back), another node may have fired them
            # since. Read them from state, as the rest of a gained bucket.
            dirty.update(job_id for batch in created for job_id in batch.ids())
            created = []
            self._reassign(reload_all)
        if created:
            self._add_created(created, dirty)
        if dirty:
            if self._gaining is not None:
                self._gain_skip.update(dirty)
            self._reload_jobs(dirty)
        if self._gaining is not None:
            self._gain()
        if reload_all and on_reload is not None:
            on_reload()

    @property
    def gaining(self) -> bool:
        """Jobs of gained buckets are still being loaded."""
        return self._gaining is not None

    def _reassign(self, reload_all: bool) -> None:
        machine = self._machine
        self.epoch = machine.epoch
        owned = frozenset(b for b, owner in enumerate(machine.owners) if owner == self.node_id)
        if reload_all:  # everything again, by the same steps
            self.jobs.clear()
            self._heap.clear()
            self._policy_heap.clear()
            self.payloads.clear()
            self._gaining = None
            self._gain_skip.clear()
            gained = owned
        else:
            gained = owned - self.buckets
            self._drop(self.buckets - owned)
        self.buckets = owned
        if gained:
            # The new read of a gained bucket is the freshest: none of its jobs
            # is skipped (ids marked changed while it was another node's, or
            # before it was lost, if it comes back while a gain still loads).
            self._gain_skip = {j for j in self._gain_skip if bucket_of(j) not in gained}
            first, rest = self._gained_rows(sorted(gained))
            # A gain still loading may hold rows of these buckets read before
            # they went away (a bucket lost and regained): the new read loads
            # first, so those older rows must not follow it.
            earlier = (row for row in self._gaining or () if bucket_of(row["id"]) not in gained)
            self._gaining = itertools.chain(first, earlier, rest)

    def _gained_rows(
        self, gained: list[int]
    ) -> tuple[Iterator[dict[str, Any]], Iterator[dict[str, Any]]]:
        """The rows of ``gained`` buckets to load: first those due within
        ``GAIN_FIRST_SECONDS`` (soonest first, by chunks), then every other
        in id order. Both are read lazily, each chunk when reached; a job
        loaded first is not loaded again from the rest."""
        soon = self._queries.due_before(
            gained, int(self._clock()) + GAIN_FIRST_SECONDS, GAIN_FIRST_MAX
        )
        # A read gives a chunk's rows in id order: chunks no larger than a
        # step keep each step's jobs the soonest of those left.
        size = min(SCHEDULING_CHUNK, GAIN_PER_REFRESH)
        first = itertools.chain.from_iterable(
            self._queries.jobs_for_scheduling(soon[i : i + size], gained)
            for i in range(0, len(soon), size)
        )
        loaded = set(soon)
        rest = (
            row
            for row in self._queries.jobs_for_scheduling(None, gained)
            if row["id"] not in loaded
        )
        return first, rest

    def _gain(self) -> None:
        """Load the next ``GAIN_PER_REFRESH`` rows of the gained buckets: each
        read fresh (by chunks) when reached; rows of buckets moved away since,
        and of jobs re-read meanwhile, are skipped."""
        assert self._gaining is not None
        taken = 0
        skip, buckets = self._gain_skip, self.buckets

        def fresh() -> Iterator[dict[str, Any]]:
            nonlocal taken
            for row in itertools.islice(self._gaining or iter(()), GAIN_PER_REFRESH):
                taken += 1
                if row["id"] not in skip and bucket_of(row["id"]) in buckets:
                    yield row

        self._add(fresh())
        if taken < GAIN_PER_REFRESH:
            self._gaining = None
            self._gain_skip.clear()

    def _drop(self, lost: frozenset[int]) -> None:
        """Forget the jobs (and payloads) of buckets no longer owned."""
        for job_id in [j for j in self.jobs if bucket_of(j) in lost]:
            del self.jobs[job_id]  # its heap entries go stale
        for job_id in [j for j in self.payloads if bucket_of(j) in lost]:
            del self.payloads[job_id]

    def _reload_jobs(self, dirty: set[int]) -> None:
        for job_id in dirty:
            self.jobs.pop(job_id, None)
            self.payloads.pop(job_id, None)
        self._load(sorted(dirty), self.buckets)

    def _add_created(self, created: list[CreatedJobs], dirty: set[int]) -> None:
        """Load the new jobs of owned buckets from their commands; those changed
        since (``dirty``) are read from state instead, after, and those already
        read from state (a gain's read between their commit and its
        announcement) are kept as read."""
        buckets, jobs = self.buckets, self.jobs
        for batch in created:
            rows = batch.scheduling_rows(
                lambda job_id: (
                    job_id not in dirty and job_id not in jobs and bucket_of(job_id) in buckets
                )
            )
            if self._gaining is not None:  # the gain's own read of them may come later
                self._gain_skip.update(row["id"] for row in rows)
            self._add(rows)

    def _load(self, ids: list[int] | None, buckets: frozenset[int]) -> None:
        if not buckets:
            return
        self._add(self._queries.jobs_for_scheduling(ids, sorted(buckets)))

    def _add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            if row["paused"]:
                continue
            raw_policy = row["policy"]
            try:
                schedule = job_schedule(row["spec"], row["timezone"], row["anchor"], raw_policy)
            except ValueError:
                log.error("job %s has an invalid schedule %r", row["id"], row["spec"])
                continue
            policy = policy_of(raw_policy)
            self._version += 1
            job = OwnedJob(
                row["id"],
                schedule,
                row["last_fired_slot"],
                self._version,
                row["revision"],
                policy,
                policy.runs_left(row["fired_count"]),
            )
            kept = row["next_run"]  # kept in state since command version 3
            if kept is None or job.runs_left == 0:
                kept = resume_slot(schedule, row["not_before"], job.last_fired, job.runs_left)
            self.push(job, kept)

    # -- the heap ----------------------------------------------------------------------------

    def push(self, job: OwnedJob, slot: int) -> None:
        """(Re)schedule ``job`` at ``slot`` (due at ``slot`` plus its jitter
        offset); it is no longer pending. A job with no slot left (``NEVER``:
        completed, or ``@manually``) is kept but never due."""
        job.next_slot = slot
        job.pending = False
        self.jobs[job.id] = job
        if slot < NEVER:
            if job.policy is DEFAULT_POLICY:
                heapq.heappush(self._heap, (slot, job.id, job.version))
            else:
                heapq.heappush(self._policy_heap, (job.due_at(slot), job.id, job.version))

    def pop_due(self, now: float) -> Iterator[OwnedJob]:
        """Pop the live, not pending jobs to decide at ``now``: due, or without
        policies and due within ``fire_ahead``; earliest due first, skipping
        stale entries. Each pop happens only when the consumer asks for the
        next job: stop iterating and the rest stay."""
        plain, policies = self._heap, self._policy_heap
        ahead = now + self._ahead
        jobs = self.jobs
        while True:
            if policies and policies[0][0] <= now and (not plain or policies[0] <= plain[0]):
                _due, job_id, version = heapq.heappop(policies)
            elif plain and plain[0][0] <= ahead:  # also when it is due before the other
                _due, job_id, version = heapq.heappop(plain)
            else:
                return
            job = jobs.get(job_id)
            if job is None or job.version != version or job.pending:
                continue
            yield job

    def due_backlog(self, now: float) -> int:
        """Live jobs due at ``now`` and not pending (not those decided ahead
        of a slot still to come). Stale entries (a job paused, changed,
        deleted or moved since) are not counted: they stand for no fire."""
        jobs = self.jobs
        return sum(
            1
            for heap in (self._heap, self._policy_heap)
            for due, job_id, version in heap
            if due <= now
            and (job := jobs.get(job_id)) is not None
            and job.version == version
            and not job.pending
        )
