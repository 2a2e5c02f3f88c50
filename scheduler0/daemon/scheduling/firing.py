"""One ``SlotsFired`` per tick: propose the due slots, dispatch what was accepted.

Each tick pops the owned jobs whose next slot is due (as many as the executor
has room for, and no more than ``ROWS_PER_TICK`` rows' worth), and the jobs
without policies whose next slot is due within the owned set's ``fire_ahead``
seconds (their fires are held by the dispatcher until the slot), splits each
job's due slots with the misfire policy, and proposes ONE ``SlotsFired`` for
all of them. Only one such proposal is in
flight at a time. On its outcome:

* accepted: the entries the state machine accepted are dispatched; every job
  of the tick goes back on the heap at its next slot;
* stale: a fire proposed but not accepted (another node owns the bucket now,
  or the slot was already fired) is NOT dispatched; the job is re-read from
  state at the next refresh instead of being rescheduled;
* ambiguous (no verdict, e.g. ``NotCommitted``): nothing is dispatched and the
  whole owned set is reloaded from state. If the command is applied after all,
  the reload declares its executions ``lost`` and adoption re-sends them.

Acceptance is decided in log order by the state machine, so a stale owner or a
double tick can never get one slot fired twice (DESIGN.md, "Firing exactly once").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from scheduler0.daemon.scheduling.dispatch import Dispatcher
from scheduler0.daemon.scheduling.misfire import (
    CATCHUP_FIRES,
    catch_up,
    due_slots,
    following_if_on_time,
)
from scheduler0.daemon.scheduling.overlap import SLOTS_IN_FLIGHT, overlap_split, skip_reason
from scheduler0.daemon.scheduling.owned import OwnedJob, OwnedJobs
from scheduler0.daemon.scheduling.policy import DEFAULT_POLICY
from scheduler0.daemon.scheduling.proposals import Outcome, Proposer
from scheduler0.daemon.scheduling.stats import SchedulerStats
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.queries import Queries

ROWS_PER_TICK = 10_000
"""Execution rows (fires, listed missed and skipped slots) one ``SlotsFired``
writes at most (its last job may add up to ``MISSED_LISTED`` and
``CATCHUP_FIRES`` past it); the jobs after it stay due for the next tick. Every node applies
the command on its raft thread, which sends no heartbeat meanwhile: a
restored cluster's first catch-up (10,000 jobs, ~17 missed slots each: 170,000
rows in one command) held every node for seconds, terms went 1 to 9 in 20 s,
and a live worker was declared down and its fires sent twice. At 10-45 us a
row, 10,000 rows apply in well under the 1 s election timeout's floor."""

Batch = dict[int, tuple[OwnedJob, int]]
"""The jobs of one proposal: job id -> (job, its slot after this tick)."""


class Capacity(Protocol):
    """The executor's side that says how much it can take (``Executor.free_capacity``)."""

    def free_capacity(self) -> int: ...


class Firing:
    def __init__(
        self,
        *,
        node_id: int,
        owned: OwnedJobs,
        executor: Capacity,
        proposer: Proposer,
        dispatcher: Dispatcher,
        stats: SchedulerStats,
        misfire_grace: float,
        clock: Callable[[], float],
        held_back: Callable[[], bool] | None = None,
        queries: Queries,
    ) -> None:
        self.node_id = node_id
        self._queries = queries
        self._owned = owned
        self._executor = executor
        self._proposer = proposer
        self._dispatcher = dispatcher
        self._stats = stats
        self._grace = misfire_grace
        self._clock = clock
        self._held_back = held_back
        """True while nothing may be fired (``Adoption.owes_declaration``)."""
        self._in_flight = dispatcher.in_flight
        """What of the overlap-policy jobs is in flight (``overlap.InFlight``)."""
        self.in_flight = False
        """A ``SlotsFired`` is proposed and its outcome is not in yet."""
        self._cut = False
        """The proposal in flight stopped at ``ROWS_PER_TICK``: once it is
        decided, the next goes out at once rather than at the next tick."""

    def fire_due(self) -> None:
        """Propose the due slots of this tick; nothing while the last is in flight."""
        if self.in_flight or (self._held_back is not None and self._held_back()):
            return
        now = self._clock()
        capacity = self._executor.free_capacity() - len(self._dispatcher.held)
        fires: list[list[int]] = []
        missed: list[list[Any]] = []
        skipped: list[list[Any]] = []
        caught_up: list[list[int]] = []
        batch: Batch = {}
        budget = ROWS_PER_TICK  # less the listed missed and skipped slots
        self._cut = False
        if capacity > 0:
            grace = self._grace
            recent_lag = self._stats.recent_lag
            # Due jobs, and those without policies due within ``fire_ahead``.
            for job in self._owned.pop_due(now):
                slot = job.next_slot
                if job.policy is not DEFAULT_POLICY:
                    job.pending = True
                    room = min(capacity, budget) - len(fires)
                    n_missed, n_skipped = len(missed), len(skipped)
                    batch[job.id] = (
                        job,
                        self._by_policy(job, now, fires, missed, skipped, room, caught_up),
                    )
                    budget -= sum(len(e[1]) for e in missed[n_missed:])
                    budget -= sum(len(e[1]) for e in skipped[n_skipped:])
                else:
                    following = following_if_on_time(job.schedule, slot, now, grace)
                    if following is not None:  # one slot due, on time: the common case
                        fires.append([job.id, slot])
                        if slot <= now:  # else held by the dispatcher until its slot
                            recent_lag.append(now - slot)
                    else:  # several slots due, or too late: the misfire policy decides
                        fire_slot, listed, uncounted, following = due_slots(
                            job.schedule, slot, now, grace
                        )
                        if listed or uncounted:
                            missed.append([job.id, listed, uncounted])
                            budget -= len(listed)
                        if fire_slot is not None:
                            fires.append([job.id, fire_slot])
                            recent_lag.append(now - fire_slot)
                    job.pending = True
                    batch[job.id] = (job, following)
                if len(fires) >= capacity or len(fires) >= budget:
                    self._cut = len(fires) >= budget
                    break
        if not batch:
            return
        next_runs: dict[int, list[int]] = {}
        revisions: list[list[int]] = []
        for job_id, (job, following_slot) in batch.items():
            next_runs.setdefault(following_slot, []).append(job_id)
            if job.revision:
                revisions.append([job_id, job.revision])
        command = c.SlotsFired(
            now=now,
            node_id=self.node_id,
            epoch=self._owned.epoch,
            fires=fires,
            missed=missed,
            following=[[slot, ids] for slot, ids in next_runs.items()],
            revisions=revisions,
            skipped=skipped,
            caught_up=caught_up,
        )
        self.in_flight = True
        self._proposer.propose(
            command, lambda outcome: self._fired(batch, fires, outcome, missed, skipped)
        )

    def _by_policy(
        self,
        job: OwnedJob,
        now: float,
        fires: list[list[int]],
        missed: list[list[Any]],
        skipped: list[list[Any]],
        room: int,
        caught_up: list[list[int]] | None = None,
    ) -> int:
        """Split a job's due slots by its policies (``misfire.catch_up``, then
        ``overlap.overlap_split``), add them to the tick's ``fires``,
        ``missed`` and ``skipped``, and return its next slot.
        ``catchup=all`` fires at most ``room`` (the executor's free capacity
        left in this tick) slots; the rest stay due for the next ticks.

        With ``jitter_seconds`` the job was due at its slot plus that slot's
        offset: lateness is counted from then (the policy sees the clock
        shifted back by the offset), and the fire keeps the slot itself (its
        execution id).

        A slot fired while a later slot of the job was already due (only a
        ``catchup=all`` backlog does that) is listed in ``caught_up``: its
        execution's trigger is ``catchup``. The newest due slot, which the
        job would fire without a backlog, stays ``schedule``."""
        slot = job.next_slot
        offset = job.due_at(slot) - slot
        shifted = now - offset
        policy = job.policy
        window = policy.window(self._grace)
        runs_left = job.runs_left
        following: int | None = None
        if runs_left is None or runs_left > 1:
            # one slot due, on time: every catchup fires it
            following = following_if_on_time(job.schedule, slot, shifted, window)
        on_time = following is not None
        if following is not None:
            fired = [slot]
        else:
            fired, listed, uncounted, following = catch_up(
                job.schedule,
                slot,
                shifted,
                window,
                policy.catchup,
                runs_left,
                max(1, min(CATCHUP_FIRES, room)),  # a backlog never overfills the executor
            )
            if listed or uncounted:
                missed.append([job.id, listed, uncounted])
        if policy.overlap != "allow" and fired:
            in_flight = self._in_flight
            elsewhere = self._sent_elsewhere(job, now)
            busy = in_flight.busy(job.id)
            if elsewhere:
                # Another sender's run: this node cannot hold a fire until it
                # ends (its InFlight sees only its own), so none fires meanwhile.
                busy = SLOTS_IN_FLIGHT[policy.overlap]
            fired, skip = overlap_split(policy.overlap, busy, fired)
            if skip:
                # what it waits on: sent earlier, or fired just before it in this tick
                running = elsewhere or in_flight.in_flight(job.id) or fired
                reason = skip_reason(policy.overlap, job.id, running, taken_over=bool(elsewhere))
                skipped.append([job.id, skip, reason])
                if runs_left is not None:  # a skipped slot is not a run: more are left
                    following = job.schedule.next_after(skip[-1])
        if not on_time and caught_up is not None and policy.catchup == "all":
            caught_up.extend([job.id, s] for s in fired if job.schedule.next_after(s) <= shifted)
        for fire_slot in fired:
            fires.append([job.id, fire_slot])
            self._stats.recent_lag.append(shifted - fire_slot)
        return following

    def _sent_elsewhere(self, job: OwnedJob, now: float) -> list[int]:
        """Slots of the job's executions another sender may still be
        delivering (a node that owned its bucket before, or this node before
        a restart, whose lost runs adoption re-sends), read from state while
        the job was loaded from it and until none is left: this node's
        ``InFlight`` knows only what it sent itself."""
        if not job.check_senders:
            return []
        elsewhere = self._queries.sent_elsewhere(job.id, self.node_id, now, self._grace)
        job.check_senders = bool(elsewhere)
        return elsewhere

    def _fired(
        self,
        batch: Batch,
        fires: list[list[int]],
        outcome: Outcome,
        missed: list[list[Any]] | None = None,
        skipped: list[list[Any]] | None = None,
    ) -> None:
        self.in_flight = False
        result, error = outcome
        if error is not None:
            # Ambiguous: the command may still be applied later. Re-read the
            # jobs from state; anything applied but unsent is declared lost
            # by the full reload and then re-sent.
            self._stats.proposals_failed += 1
            self._owned.invalidate(batch, reload_all=True)
            return
        accepted = result.get("accepted", [])
        previous = {job_id: job.last_fired for job_id, (job, _) in batch.items()}
        self._stats.fired += len(accepted)
        self._stats.rejected += len(fires) - len(accepted)
        if missed:
            self._stats.missed += sum(len(listed) + uncounted for _, listed, uncounted in missed)
        if skipped:
            self._stats.skipped += sum(len(slots) for _, slots, _ in skipped)
        self._reschedule(batch, fires, accepted)
        if accepted:
            self._dispatcher.dispatch(accepted, previous)
        if self._cut:
            self.fire_due()

    def _reschedule(self, batch: Batch, fires: list[list[int]], accepted: list[list[int]]) -> None:
        """Put the tick's jobs back on the heap at their next slot, except those
        whose fire was not accepted (stale): they are re-read from state."""
        accepted_ids = {job_id for job_id, _ in accepted}
        wanted_ids = {job_id for job_id, _ in fires}
        stale: list[int] = []
        owned = self._owned
        jobs = owned.jobs
        for job_id, (job, following) in batch.items():
            if jobs.get(job_id) is not job:
                continue  # changed or removed meanwhile; it was reloaded
            if job_id in wanted_ids and job_id not in accepted_ids:
                stale.append(job_id)
                continue
            owned.push(job, following)
        for job_id, slot in accepted:
            fired_job = jobs.get(job_id)
            if fired_job is not None:
                fired_job.last_fired = slot
                if fired_job.runs_left is not None:
                    fired_job.runs_left -= 1
        if stale:
            owned.invalidate(stale)
