"""The worker side of firing: a thin loop over the scheduling parts.

Every tick (``tick``, 0.1 s) the scheduler, in this order:

1. refreshes the owned set from change notifications (``owned``), declaring
   its own earlier ``dispatched`` executions lost after a full reload
   (``adoption``);
2. hands the fires held until their slot whose slot has come to the executor
   (``dispatch``);
3. after a full reload, declares its own unsent ``dispatched`` executions
   lost; once that is proposed, adopts ``lost``/``pending`` executions of
   owned buckets (``adoption``);
4. proposes the callback outcomes gathered so far (``results``);
5. proposes the due slots, and those of jobs without policies due within
   ``fire_ahead`` seconds, as ONE ``SlotsFired`` and dispatches only what the
   state machine accepted (``firing``, with ``misfire`` and ``dispatch``).

See DESIGN.md, "Firing exactly once".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from scheduler0.daemon.replication import ReplicatedLog
from scheduler0.daemon.scheduling.adoption import Adoption
from scheduler0.daemon.scheduling.dispatch import Dispatcher
from scheduler0.daemon.scheduling.firing import Capacity, Firing
from scheduler0.daemon.scheduling.overlap import FireSubmitter, InFlight
from scheduler0.daemon.scheduling.owned import OwnedJobs
from scheduler0.daemon.scheduling.proposals import Proposer
from scheduler0.daemon.scheduling.results import ResultsBatcher, ResultSource
from scheduler0.daemon.scheduling.stats import SchedulerStats
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import AssignmentView
from scheduler0.daemon.state.queries import Queries
from scheduler0.errors import Scheduler0Error

__all__ = ["ExecutorPort", "Scheduler", "SchedulerStats"]

log = logging.getLogger(__name__)


class ExecutorPort(Capacity, FireSubmitter, ResultSource, Protocol):
    """The executor as the scheduler uses it: ``free_capacity``, ``submit``,
    ``drain_results`` (``executor.http.Executor``)."""


class Scheduler:
    """Fires the jobs of the buckets this node owns, one tick at a time.

    Owns: the tick loop and its order, the parts it composes (``OwnedJobs``,
    ``Firing``, ``ResultsBatcher``, ``Adoption``, and the ``Dispatcher`` and
    ``Proposer`` they share), ``stats`` and the lag figure.

    Must never: decide ownership (the replicated assignment does, and the state
    machine accepts a slot in log order); dispatch a fire the state machine did
    not accept; wait for a proposal inside a tick (outcomes come back on the
    event loop); write state other than by proposing commands; or put work per
    fire in this loop (per-fire work lives in ``firing``/``dispatch`` only).
    """

    def __init__(
        self,
        *,
        node_id: int,
        log: ReplicatedLog,
        machine: AssignmentView,
        queries: Queries,
        executor: ExecutorPort,
        misfire_grace: float,
        fire_ahead: float = 0.0,
        tick: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self._log = log
        self._tick = tick
        self._clock = clock
        self._stopping = False
        self.stats = SchedulerStats()
        proposer = Proposer(log)
        self._owned = OwnedJobs(
            node_id=node_id, machine=machine, queries=queries, fire_ahead=fire_ahead, clock=clock
        )
        in_flight = InFlight(executor)
        self._results = ResultsBatcher(
            node_id=node_id,
            executor=executor,
            proposer=proposer,
            stats=self.stats,
            clock=clock,
            on_drained=in_flight.finished,
        )
        dispatcher = Dispatcher(
            queries=queries,
            executor=executor,
            payloads=self._owned.payloads,
            sent=self._results.sent,
            in_flight=in_flight,
            jobs=self._owned.jobs,
            clock=clock if fire_ahead > 0 else None,
            stats=self.stats,
            on_cancelled=self._results.record,
        )
        self._dispatcher = dispatcher
        self._firing = Firing(
            node_id=node_id,
            owned=self._owned,
            executor=executor,
            proposer=proposer,
            dispatcher=dispatcher,
            stats=self.stats,
            misfire_grace=misfire_grace,
            clock=clock,
            held_back=lambda: self._adoption.owes_declaration,
            queries=queries,
        )
        self._adoption = Adoption(
            node_id=node_id,
            queries=queries,
            owned=self._owned,
            proposer=proposer,
            dispatcher=dispatcher,
            sent=self._results.sent,
            executor=executor,
            stats=self.stats,
            misfire_grace=misfire_grace,
            clock=clock,
        )

    # -- notifications from the state machine (apply thread) ---------------------------------

    def on_change(self, kind: str, detail: Any) -> None:
        self._owned.on_change(kind, detail)

    # -- the loop -------------------------------------------------------------------------------

    @property
    def owned_jobs(self) -> int:
        return len(self._owned.jobs)

    @property
    def owned_buckets(self) -> int:
        return len(self._owned.buckets)

    @property
    def due_backlog(self) -> int:
        return self._owned.due_backlog(self._clock())

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

    async def declare_unsent_lost(self, timeout: float) -> bool:
        """After the executor stopped and the last results were recorded:
        every run this node still has ``dispatched`` was never sent (or its
        result could not be recorded in time): one ``NodeRunsLost`` hands it
        to its bucket's next owner now, rather than at this node's restart
        or when the leader finds it gone (a removed node never restarts).
        Returns whether it was committed within ``timeout`` seconds."""
        if not self._log.ready:
            return False
        command = c.NodeRunsLost(now=time.time(), node_id=self.node_id, keep=[])
        try:
            await self._log.propose(command, timeout)
        except Scheduler0Error:
            return False
        return True

    async def record_last_results(self, timeout: float) -> bool:
        """After the executor stopped (a graceful stop, a removal): propose
        the results it has left, until they are recorded or ``timeout``
        seconds pass. Their fires were sent: unrecorded, a restart (or the
        leader, for a removed node) would declare them lost and send them
        again. Returns whether everything was recorded."""
        if not self._log.ready:
            return False
        deadline = time.monotonic() + timeout
        while True:
            self._results.flush()
            if self._results.settled:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    def tick_once(self) -> None:
        if not self._log.ready:
            return
        self.stats.last_tick_at = self._clock()
        self._owned.refresh(on_reload=self._adoption.declare_own_lost)
        self._dispatcher.release(self._clock())
        adoption = self._adoption
        adoption.declare(firing=self._firing.in_flight)
        if not adoption.owes_declaration:
            adoption.adopt()
        self._results.flush()
        self._firing.fire_due()

    def lag_p99(self) -> float:
        values = sorted(self.stats.recent_lag)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(len(values) * 0.99))]
