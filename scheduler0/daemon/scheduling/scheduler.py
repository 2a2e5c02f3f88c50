"""The worker side of firing: owned jobs, a due-time heap, one command per tick.

Every tick the scheduler pops the jobs whose next slot is due, applies the
misfire policy, and proposes ONE ``SlotsFired`` for all of them. Only the
entries the state machine accepted are handed to the executor, so a stale
owner or a double tick can never fire a slot twice (see DESIGN.md, "Firing exactly once").
Callback outcomes go back as one ``ResultsRecorded`` per tick.

Misfire policy (per job, whenever more than one slot is due at once, e.g.
after a restart): the latest due slot is fired if it is no older than
``misfire_grace`` seconds; every other due slot is recorded as ``missed``.
At most ``MISSED_LISTED`` missed slots per job and tick become execution
rows; the rest only add to the job's ``missed_count``.

What the scheduler holds in memory is derived from replicated state and
refreshed from change notifications; it never decides ownership itself.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler0.daemon.executor.callback_body import callback_item, payload_head
from scheduler0.daemon.executor.http import Executor, Fire
from scheduler0.daemon.replication import WAIT_FOR_VERDICT, ReplicatedLog
from scheduler0.daemon.scheduling.cron import EverySchedule, Schedule, parse_schedule
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import AssignmentView
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import bucket_of, execution_id
from scheduler0.errors import NotCommitted, Scheduler0Error

log = logging.getLogger(__name__)

MISSED_LISTED = 100
ADOPT_EVERY = 0.5
"""Seconds between looks for ``lost`` or ``pending`` (run-now) executions to send."""
_SCAN_LIMIT = 10_000


class _Job:
    __slots__ = ("id", "last_fired", "next_slot", "pending", "schedule", "version")

    def __init__(self, job_id: int, schedule: Schedule, last_fired: int | None, version: int):
        self.id = job_id
        self.schedule = schedule
        self.last_fired = last_fired
        self.version = version
        self.next_slot = 0
        self.pending = False


@dataclass
class SchedulerStats:
    fired: int = 0
    missed: int = 0
    rejected: int = 0
    lag_seconds: float = 0.0
    last_tick_at: float = 0.0
    results_backlog: int = 0
    proposals_failed: int = 0
    redispatched: int = 0
    recent_lag: deque[float] = field(default_factory=lambda: deque(maxlen=256))


Outcome = tuple[Any, Scheduler0Error | None]
"""A proposal's apply result, or the error that stands for it."""


class Scheduler:
    def __init__(
        self,
        *,
        node_id: int,
        log: ReplicatedLog,
        machine: AssignmentView,
        queries: Queries,
        executor: Executor,
        misfire_grace: float,
        tick: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self._log = log
        self._machine = machine
        self._tasks: set[asyncio.Task[None]] = set()
        self._queries = queries
        self._executor = executor
        self._grace = misfire_grace
        self._tick = tick
        self._clock = clock
        self._jobs: dict[int, _Job] = {}
        self._heap: list[tuple[int, int, int]] = []
        self._version = 0
        self._epoch = -1
        self._buckets: frozenset[int] = frozenset()
        self._lock = threading.Lock()
        self._dirty: set[int] = set()
        self._reload_all = True
        self._reassigned = False
        self._fire_in_flight = False
        self._results: dict[tuple[Any, ...], list[int]] = {}
        """Callback outcomes not yet proposed: (slot, state, code, attempts,
        latency_ms, error) -> job ids."""
        self._results_in_flight = False
        self._sent: set[tuple[int, int]] = set()
        self._payloads: dict[int, tuple[bytes, str, str]] = {}
        """Per owned job: the fixed start of its callback item, URL and secret
        (``payload_head``); dropped whenever the job changes or moves away."""
        self._last_adopt = 0.0
        self.stats = SchedulerStats()
        self._stopping = False

    # -- notifications from the state machine (raft thread) ---------------------------------

    def on_change(self, kind: str, detail: Any) -> None:
        with self._lock:
            if kind == "jobs":
                self._dirty.update(detail)
            elif kind == "assignment":
                self._reassigned = True
            elif kind == "reset":
                self._reload_all = True

    # -- the loop -------------------------------------------------------------------------------

    @property
    def owned_jobs(self) -> int:
        return len(self._jobs)

    @property
    def owned_buckets(self) -> int:
        return len(self._buckets)

    @property
    def due_backlog(self) -> int:
        now = self._clock()
        return sum(1 for slot, _, _ in self._heap if slot <= now)

    async def run(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            try:
                self.tick_once()
            except Exception:
                log.exception("scheduler tick failed")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self._tick - elapsed))

    def stop(self) -> None:
        self._stopping = True

    def tick_once(self) -> None:
        if not self._log.ready:
            return
        self.stats.last_tick_at = self._clock()
        self._refresh()
        self._adopt_lost()
        self._flush_results()
        if not self._fire_in_flight:
            self._fire_due()

    # -- keeping the owned set in step with replicated state ---------------------------

    def _refresh(self) -> None:
        with self._lock:
            reload_all, self._reload_all = self._reload_all, False
            reassigned, self._reassigned = self._reassigned, False
            dirty, self._dirty = self._dirty, set()
        if reload_all or reassigned:
            self._epoch = self._machine.epoch
            owned = frozenset(
                b for b, owner in enumerate(self._machine.owners) if owner == self.node_id
            )
            if reload_all:
                self._jobs.clear()
                self._heap.clear()
                self._payloads.clear()
                gained = owned
            else:
                lost = self._buckets - owned
                gained = owned - self._buckets
                for job_id in [j for j in self._jobs if bucket_of(j) in lost]:
                    del self._jobs[job_id]  # its heap entries go stale
                for job_id in [j for j in self._payloads if bucket_of(j) in lost]:
                    del self._payloads[job_id]
            self._buckets = owned
            if gained:
                self._load(None, gained)
            if reload_all:
                self._declare_own_lost()
        if dirty:
            for job_id in dirty:
                self._jobs.pop(job_id, None)
                self._payloads.pop(job_id, None)
            self._load(sorted(dirty), self._buckets)

    def _load(self, ids: list[int] | None, buckets: frozenset[int]) -> None:
        if not buckets:
            return
        for row in self._queries.jobs_for_scheduling(ids, sorted(buckets)):
            if row["paused"]:
                continue
            try:
                schedule = parse_schedule(row["spec"], row["timezone"], row["anchor"])
            except ValueError:
                log.error("job %s has an invalid schedule %r", row["id"], row["spec"])
                continue
            self._version += 1
            job = _Job(row["id"], schedule, row["last_fired_slot"], self._version)
            base = max(row["not_before"], job.last_fired or row["not_before"])
            self._push(job, schedule.next_after(base))

    def _push(self, job: _Job, slot: int) -> None:
        job.next_slot = slot
        job.pending = False
        self._jobs[job.id] = job
        heapq.heappush(self._heap, (slot, job.id, job.version))

    def _declare_own_lost(self) -> None:
        """After a restart this node's earlier ``dispatched`` executions have no
        sender any more: record them ``lost`` so that their owner re-sends them."""
        mine = [
            [row["job_id"], row["slot"]]
            for row in self._queries.unsettled("dispatched", self.node_id)
            if (row["job_id"], row["slot"]) not in self._sent
        ]
        if mine:
            self._propose(c.ExecutionsLost(now=self._clock(), executions=mine), _ignore)

    def _adopt_lost(self) -> None:
        """Re-send, with the same execution id, ``lost`` executions of owned
        buckets still within the grace window; older ones stay ``lost``."""
        now = self._clock()
        if now - self._last_adopt < ADOPT_EVERY or not self._buckets:
            return
        self._last_adopt = now
        rows = [*self._queries.unsettled("lost"), *self._queries.unsettled("pending")]
        wanted = [
            [row["job_id"], row["slot"]]
            for row in rows
            if bucket_of(row["job_id"]) in self._buckets and now - row["slot"] <= self._grace
        ]
        if not wanted:
            return
        self._propose(
            c.ExecutionsRedispatched(now=now, node_id=self.node_id, executions=wanted),
            self._adopted,
        )

    def _adopted(self, outcome: Outcome) -> None:
        result, error = outcome
        if error is None:
            accepted = result["accepted"]
            self.stats.redispatched += len(accepted)
            if accepted:
                self._dispatch(accepted, {})

    # -- firing -----------------------------------------------------------------------------------

    def _fire_due(self) -> None:
        now = self._clock()
        capacity = self._executor.free_capacity()
        fires: list[list[int]] = []
        missed: list[list[Any]] = []
        batch: dict[int, tuple[_Job, int]] = {}
        heap = self._heap
        while heap and heap[0][0] <= now and len(fires) < capacity:
            _slot, job_id, version = heapq.heappop(heap)
            job = self._jobs.get(job_id)
            if job is None or job.version != version or job.pending:
                continue
            fire_slot, listed, uncounted, following = self._due_slots(job, now)
            if listed or uncounted:
                missed.append([job.id, listed, uncounted])
            if fire_slot is not None:
                fires.append([job.id, fire_slot])
                self.stats.recent_lag.append(now - fire_slot)
            job.pending = True
            batch[job.id] = (job, following)
        if not batch:
            return
        command = c.SlotsFired(
            now=now, node_id=self.node_id, epoch=self._epoch, fires=fires, missed=missed
        )
        self._fire_in_flight = True
        self._propose(command, lambda outcome: self._fired(batch, fires, outcome))

    def _due_slots(self, job: _Job, now: float) -> tuple[int | None, list[int], int, int]:
        """Split the job's due slots into (slot to fire, listed missed, uncounted
        missed, first slot after now)."""
        schedule = job.schedule
        slot = job.next_slot
        if isinstance(schedule, EverySchedule):
            due = int((now - slot) // schedule.period) + 1
            latest = slot + (due - 1) * schedule.period
            following = latest + schedule.period
            first_listed = max(slot, latest - MISSED_LISTED * schedule.period)
            listed = list(range(first_listed, latest, schedule.period))
            uncounted = due - 1 - len(listed)
        else:
            recent: deque[int] = deque(maxlen=MISSED_LISTED + 1)
            count = 0
            while slot <= now and count < _SCAN_LIMIT:
                recent.append(slot)
                slot = schedule.next_after(slot)
                count += 1
            if slot <= now:  # an enormous backlog: give up counting, resume after now
                slot = schedule.next_after(int(now))
            following = slot
            latest = recent.pop()
            listed = list(recent)
            uncounted = count - 1 - len(listed)
        if now - latest > self._grace:
            listed.append(latest)
            return (
                None,
                listed[-MISSED_LISTED:],
                uncounted + max(0, len(listed) - MISSED_LISTED),
                following,
            )
        return latest, listed, uncounted, following

    def _fired(
        self,
        batch: dict[int, tuple[_Job, int]],
        fires: list[list[int]],
        outcome: Outcome,
    ) -> None:
        self._fire_in_flight = False
        result, error = outcome
        if error is not None:
            # Ambiguous: the command may still be applied later. Re-read the
            # jobs from state; anything applied but unsent is declared lost
            # by the full reload and then re-sent.
            self.stats.proposals_failed += 1
            with self._lock:
                self._dirty.update(batch)
                self._reload_all = True
            return
        accepted = result.get("accepted", [])
        previous = {job_id: job.last_fired for job_id, (job, _) in batch.items()}
        accepted_ids = {job_id for job_id, _ in accepted}
        self.stats.fired += len(accepted)
        self.stats.rejected += len(fires) - len(accepted)
        wanted_ids = {job_id for job_id, _ in fires}
        stale: list[int] = []
        for job_id, (job, following) in batch.items():
            if self._jobs.get(job_id) is not job:
                continue  # changed or removed meanwhile; it was reloaded
            if job_id in wanted_ids and job_id not in accepted_ids:
                stale.append(job_id)
                continue
            self._push(job, following)
        for job_id, slot in accepted:
            fired_job = self._jobs.get(job_id)
            if fired_job is not None:
                fired_job.last_fired = slot
        if stale:
            with self._lock:
                self._dirty.update(stale)
        if accepted:
            self._dispatch(accepted, previous)

    def _dispatch(self, accepted: list[list[int]], previous: dict[int, int | None]) -> None:
        payloads = self._payloads
        missing = [entry for entry in accepted if entry[0] not in payloads]
        if missing:
            for job_id, row in self._queries.fire_payloads(missing).items():
                payloads[job_id] = payload_head(row)
        out: list[Fire] = []
        sent = self._sent
        for job_id, slot in accepted:
            cached = payloads.get(job_id)
            if cached is None:
                continue  # deleted meanwhile
            head, callback_url, secret = cached
            exec_id = execution_id(job_id, slot)
            body = callback_item(head, exec_id, slot, previous.get(job_id))
            sent.add((job_id, slot))
            out.append(Fire(exec_id, job_id, slot, callback_url, secret, body))
        if out:
            self._executor.submit(out)

    # -- results -------------------------------------------------------------------------------

    def _flush_results(self) -> None:
        groups = self._results
        for r in self._executor.drain_results():
            key = (r.slot, r.state, r.status_code, r.attempts, r.latency_ms, r.error)
            groups.setdefault(key, []).append(r.job_id)
        self.stats.results_backlog = sum(len(ids) for ids in groups.values())
        if not groups or self._results_in_flight:
            return
        self._results = {}
        self._results_in_flight = True
        command = c.ResultsRecorded(
            now=self._clock(),
            node_id=self.node_id,
            groups=[[*key, ids] for key, ids in groups.items()],
        )
        self._propose(command, lambda outcome: self._recorded(groups, outcome))

    def _recorded(self, groups: dict[tuple[Any, ...], list[int]], outcome: Outcome) -> None:
        self._results_in_flight = False
        if isinstance(outcome[1], NotCommitted):
            # Not known to be committed: propose again, ahead of what came since.
            # (If it did commit, the rows get the same values again; the job's
            # success/failed counters count it twice.)
            for key, ids in self._results.items():
                groups.setdefault(key, []).extend(ids)
            self._results = groups
            return
        for (slot, *_), ids in groups.items():
            for job_id in ids:
                self._sent.discard((job_id, slot))

    def _propose(self, command: c.Command, then: Callable[[Outcome], None]) -> None:
        """Propose without waiting: ``then`` gets the outcome on the event loop once
        the log has a verdict (no deadline: an undecided fire stays in flight)."""

        async def run() -> None:
            try:
                outcome: Outcome = (await self._log.propose(command, WAIT_FOR_VERDICT), None)
            except Scheduler0Error as exc:
                outcome = (None, exc)
            try:
                then(outcome)
            except Exception:
                log.exception("handling the outcome of %s failed", command.type_name)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def lag_p99(self) -> float:
        values = sorted(self.stats.recent_lag)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(len(values) * 0.99))]


def _ignore(outcome: Outcome) -> None:
    return None
