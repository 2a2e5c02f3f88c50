"""Executions without a sender: declared ``lost``, then adopted and re-sent.

* After a restart (any full reload of the owned set) this node's earlier
  ``dispatched`` executions have no sender any more: one ``NodeRunsLost``
  records lost every one not in ``sent``, decided in apply (a fire proposed
  before a crash and committed after the restart is included). It is
  proposed only while nothing of this node's that dispatches (a
  ``SlotsFired``, an ``ExecutionsRedispatched``) is in flight, and nothing
  is proposed before it: otherwise a fire applied before it, whose outcome
  had not reached the scheduler yet, would be both sent and declared lost.
  (What is proposed after it is applied after it, so firing goes on.)
  Not decided (no leader yet after a whole cluster restarted), it is
  proposed again at the next tick; it is idempotent (what was re-sent since
  is in ``sent``, or another node's).
* Every ``ADOPT_EVERY`` seconds, ``lost`` executions (this node's or a dead
  worker's, which the leader declared; not a scheduled run of a job paused
  since: a pause stops its callbacks, so such a run stays ``lost``) and
  ``pending`` ones (run-now) of owned
  buckets whose slot is within the misfire grace are proposed in one
  ``ExecutionsRedispatched``. The state machine hands each to the bucket's
  current owner once, in log order; the accepted ones are dispatched again
  with the same execution id (receivers de-duplicate on it). Older ones stay
  ``lost``.
* Backfill executions (``JobBackfilled``: past slots, ``pending`` whatever
  their age) go the same way, but paced so that they never crowd out live
  fires: at most ``BACKFILL_PER_ROUND`` each ``ADOPT_EVERY`` seconds, never
  more than ``BACKFILL_SHARE`` of the executor's free capacity (the rest is
  the live fires'), none while the executor is full, and one proposal at a
  time. A backfill execution lost on the way is adopted again the same way,
  whatever its age.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from scheduler0.daemon.scheduling.dispatch import Dispatcher
from scheduler0.daemon.scheduling.firing import Capacity
from scheduler0.daemon.scheduling.owned import OwnedJobs
from scheduler0.daemon.scheduling.proposals import Outcome, Proposer
from scheduler0.daemon.scheduling.stats import SchedulerStats
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import bucket_of

ADOPT_EVERY = 0.5
"""Seconds between looks for ``lost`` or ``pending`` (run-now) executions to send."""

BACKFILL_PER_ROUND = 100
"""The most backfill executions one round (every ``ADOPT_EVERY`` seconds)
sends: at most 200 a second per node, whatever the size of the backfill."""

BACKFILL_SHARE = 0.5
"""The share of the executor's free capacity a round of backfill may take:
the rest stays free for the live fires of the next ticks."""


def backfill_budget(free_capacity: int) -> int:
    """How many backfill executions a round may send when the executor has
    ``free_capacity`` room: ``BACKFILL_SHARE`` of it, at most
    ``BACKFILL_PER_ROUND``; 0 when it has (almost) none."""
    return max(0, min(BACKFILL_PER_ROUND, int(free_capacity * BACKFILL_SHARE)))


class Adoption:
    def __init__(
        self,
        *,
        node_id: int,
        queries: Queries,
        owned: OwnedJobs,
        proposer: Proposer,
        dispatcher: Dispatcher,
        sent: AbstractSet[tuple[int, int]],
        executor: Capacity,
        stats: SchedulerStats,
        misfire_grace: float,
        clock: Callable[[], float],
    ) -> None:
        self.node_id = node_id
        self._queries = queries
        self._owned = owned
        self._proposer = proposer
        self._dispatcher = dispatcher
        self._sent = sent
        self._executor = executor
        self._stats = stats
        self._grace = misfire_grace
        self._clock = clock
        self._last_adopt = 0.0
        self.must_declare = False
        """A full reload happened and its ``NodeRunsLost`` is not decided yet."""
        self._declaring = False
        self._reloads = 0
        """Full reloads asked for a declaration: one decided clears
        ``must_declare`` only if no reload came after it was proposed (its
        ``keep`` may predate fires whose outcome the reload gave up on)."""
        self._adopting = 0
        """``ExecutionsRedispatched`` of ``adopt`` in flight."""
        self.backfilling = False
        """A round of backfill is proposed and its outcome is not in yet."""

    def declare_own_lost(self) -> None:
        """After a full reload (a restart): this node's ``dispatched``
        executions not in ``sent`` are to be declared lost (``declare``)."""
        self.must_declare = True
        self._reloads += 1

    @property
    def owes_declaration(self) -> bool:
        """A ``NodeRunsLost`` is due and not proposed: nothing is fired or
        adopted until it is (what is proposed after it is applied after it)."""
        return self.must_declare and not self._declaring

    def declare(self, *, firing: bool) -> None:
        """Propose the pending ``NodeRunsLost`` unless one is in flight, or a
        fire (``firing``) or an adoption of this node's is."""
        if not self.must_declare or self._declaring or firing:
            return
        if self._adopting or self.backfilling:
            return
        self._declaring = True
        keep = [list(pair) for pair in sorted(self._sent)]
        reloads = self._reloads

        def declared(outcome: Outcome) -> None:
            self._declaring = False
            result, error = outcome
            if error is None:
                self._stats.lost += result["lost"]
                if self._reloads == reloads:
                    self.must_declare = False

        self._proposer.propose(
            c.NodeRunsLost(now=self._clock(), node_id=self.node_id, keep=keep), declared
        )

    def adopt(self) -> None:
        """Re-send, with the same execution id, ``lost`` executions of owned
        buckets still within the grace window (older ones stay ``lost``) and
        ``pending`` run-now ones; then a paced round of backfill."""
        now = self._clock()
        buckets = self._owned.buckets
        if now - self._last_adopt < ADOPT_EVERY or not buckets:
            return
        self._last_adopt = now
        queries = self._queries
        since = now - self._grace  # older ones stay lost: not read
        rows = [
            *queries.unsettled("lost", backfill=False, paused=False, since=since),
            *queries.unsettled("pending", backfill=False, since=since),
        ]
        wanted = [
            [row["job_id"], row["slot"]] for row in rows if bucket_of(row["job_id"]) in buckets
        ]
        if wanted:
            self._adopting += 1
            self._proposer.propose(
                c.ExecutionsRedispatched(now=now, node_id=self.node_id, executions=wanted),
                self._adopted_lost,
            )
        self._backfill(now, buckets)

    def _backfill(self, now: float, buckets: frozenset[int]) -> None:
        """One paced round of backfill executions (see the module docstring)."""
        if self.backfilling:
            return
        budget = backfill_budget(self._executor.free_capacity())
        if budget <= 0:
            return
        due = self._queries.backfill_due(buckets, budget)
        if not due:
            return
        self.backfilling = True
        self._proposer.propose(
            c.ExecutionsRedispatched(now=now, node_id=self.node_id, executions=due),
            self._backfilled,
        )

    def _backfilled(self, outcome: Outcome) -> None:
        self.backfilling = False
        self._adopted(outcome)

    def _adopted_lost(self, outcome: Outcome) -> None:
        self._adopting -= 1
        self._adopted(outcome)

    def _adopted(self, outcome: Outcome) -> None:
        result, error = outcome
        if error is None:
            accepted = result["accepted"]
            self._stats.redispatched += len(accepted)
            if accepted:
                self._dispatcher.dispatch(accepted, {})
