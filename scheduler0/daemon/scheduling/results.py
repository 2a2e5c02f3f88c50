"""Callback outcomes back into the log: one ``ResultsRecorded`` at a time.

Each tick the executor's finished results are grouped by outcome, ``(slot,
state, status code, attempts, latency_ms, error)`` -> job ids (every fire of
one POST shares its outcome, so a tick is a handful of groups), and, unless
one is already in flight, everything gathered is proposed as ONE
``ResultsRecorded``. If that proposal is ``NotCommitted`` its groups are put
back AHEAD of what arrived since and proposed again at the next flush (if it
did commit after all, the rows get the same values again and the job's
success/failed counter counts it twice). Any other verdict settles them.

``sent`` holds the (job, slot) pairs dispatched and not yet recorded: a
restarted scheduler leaves those alone when it declares its earlier
``dispatched`` executions lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from scheduler0.daemon.executor.http import FireResult
from scheduler0.daemon.scheduling.proposals import Outcome, Proposer
from scheduler0.daemon.scheduling.stats import SchedulerStats
from scheduler0.daemon.state import commands as c
from scheduler0.errors import NotCommitted

ResultKey = tuple[int, str, int | None, int, int, str | None]
"""One outcome: (slot, state, status_code, attempts, latency_ms, error); with
its job ids it is one group of ``ResultsRecorded.groups`` (journal format)."""

Groups = dict[ResultKey, list[int]]


class ResultSource(Protocol):
    """The executor's side that hands back results (``Executor.drain_results``)."""

    def drain_results(self) -> list[FireResult]: ...


class ResultsBatcher:
    def __init__(
        self,
        *,
        node_id: int,
        executor: ResultSource,
        proposer: Proposer,
        stats: SchedulerStats,
        clock: Callable[[], float],
        on_drained: Callable[[list[FireResult]], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self._on_drained = on_drained
        """Hears every batch of results drained (``overlap.InFlight.finished``)."""
        self._executor = executor
        self._proposer = proposer
        self._stats = stats
        self._clock = clock
        self._pending: Groups = {}
        """Outcomes not yet proposed, in the order they are to be proposed."""
        self._in_flight = False
        self.sent: set[tuple[int, int]] = set()
        """(job, slot) pairs dispatched and not yet recorded (the dispatcher adds)."""

    @property
    def in_flight(self) -> bool:
        return self._in_flight

    @property
    def settled(self) -> bool:
        """Nothing waits to be proposed and no proposal is in flight."""
        return not self._pending and not self._in_flight

    def record(self, results: list[FireResult]) -> None:
        """Outcomes that did not come from the executor (a held fire cancelled
        by ``Dispatcher.release``): proposed with the next flush."""
        groups = self._pending
        for r in results:
            key = (r.slot, r.state, r.status_code, r.attempts, r.latency_ms, r.error)
            groups.setdefault(key, []).append(r.job_id)

    def flush(self) -> None:
        """Group the executor's new results; propose them all unless a
        ``ResultsRecorded`` is in flight."""
        groups = self._pending
        drained = self._executor.drain_results()
        if drained and self._on_drained is not None:
            self._on_drained(drained)
        self.record(drained)
        self._stats.results_backlog = sum(len(ids) for ids in groups.values())
        if not groups or self._in_flight:
            return
        self._pending = {}
        self._in_flight = True
        command = c.ResultsRecorded(
            now=self._clock(),
            node_id=self.node_id,
            groups=[[*key, ids] for key, ids in groups.items()],
        )
        self._proposer.propose(command, lambda outcome: self._recorded(groups, outcome))

    def _recorded(self, groups: Groups, outcome: Outcome) -> None:
        self._in_flight = False
        if isinstance(outcome.error, NotCommitted):
            # Not known to be committed: propose again, ahead of what came since.
            for key, ids in self._pending.items():
                groups.setdefault(key, []).extend(ids)
            self._pending = groups
            return
        sent = self.sent
        for (slot, *_), ids in groups.items():
            for job_id in ids:
                sent.discard((job_id, slot))
