"""The ``overlap`` policy on the owner: which due slots of a job fire and
which are skipped while its previous execution is still in flight.

Only the owner knows what it has in flight (sent to the executor, no result
yet, retries included), so the owner decides, and proposes each skipped slot
in the tick's ``SlotsFired.skipped`` (with the reason), next to its fires and
missed slots: apply records the same ``skipped`` rows on every replica, in log
order, and the slot counts as taken (exactly once still holds).

- ``allow`` (the default): every due slot fires; nothing is tracked.
- ``skip``: a slot due while an execution of the job is in flight is skipped.
- ``buffer_one``: one slot may wait for the running execution: it is accepted
  (its execution is ``dispatched``) and held here, then sent when the running
  one finishes; a slot due while one already waits is skipped.

``InFlight`` tracks only jobs with an overlap policy (a plain job costs
nothing). Its counts live in memory: after a restart the node's earlier
executions are declared lost and re-sent through the dispatcher, which
counts them again. What another sender still has in flight (the node that
owned the bucket before a move, or this node's runs lost in a restart and not
yet sent again) is read from state by ``Firing`` for a job loaded from it,
until none is left: meanwhile the job's due slots are skipped, under
``buffer_one`` too (this node cannot hold a fire until another's run ends).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

from scheduler0.daemon.executor.http import Fire, FireResult
from scheduler0.daemon.state.schema import execution_id

SLOTS_IN_FLIGHT = {"skip": 1, "buffer_one": 2}
"""Per overlap policy: executions of one job that may be in flight or waiting."""


class FireSubmitter(Protocol):
    """The executor's side that takes fires (``Executor.submit``)."""

    def submit(self, fires: Sequence[Fire]) -> Sequence[Fire]:
        """Queue ``fires``; returns those refused at once (a full backlog)."""
        ...

    def refusing(self, url: str, size: int) -> bool:
        """Whether a body of ``size`` bytes for ``url`` would be refused now
        (its destination's backlog is full)."""
        ...

    def refuse(self, fires: Sequence[Fire]) -> None:
        """Record ``fires`` failed as refused by their destinations' full
        backlogs, without bodies (each was ``refusing`` just before)."""
        ...


def overlap_split(overlap: str, busy: int, slots: list[int]) -> tuple[list[int], list[int]]:
    """``(fire, skip)``: the job's due ``slots`` (ascending) split by its
    ``overlap`` policy, given ``busy`` executions of it in flight or waiting.
    The earliest slots fire, as many as the policy has room for."""
    room = SLOTS_IN_FLIGHT.get(overlap)
    if room is None:  # allow
        return slots, []
    free = max(0, room - busy)
    return slots[:free], slots[free:]


def skip_reason(overlap: str, job_id: int, running: list[int], *, taken_over: bool = False) -> str:
    """Why a slot was skipped, as its execution's ``error`` shows it;
    ``taken_over``: what runs was sent by the job's sender before this node
    (``Firing._sent_elsewhere``)."""
    previous = execution_id(job_id, running[0]) if running else "the previous execution"
    if taken_over:
        return f"overlap {overlap}: {previous} is still in flight from the job's previous sender"
    if overlap == "buffer_one":
        return f"overlap buffer_one: {previous} is still running and one execution already waits"
    return f"overlap skip: {previous} is still in flight"


class InFlight:
    """The executions of overlap-policy jobs sent by this node without a
    result yet (``running``), and the fires held back until they finish
    (``held``)."""

    def __init__(self, executor: FireSubmitter) -> None:
        self._executor = executor
        self.running: dict[int, list[int]] = {}
        """Job id -> slots of its executions in the executor (sent or retrying)."""
        self.held: dict[int, deque[Fire]] = {}
        """Job id -> fires accepted and waiting for its running execution."""

    def busy(self, job_id: int) -> int:
        """Executions of the job in flight or waiting."""
        held = self.held.get(job_id)
        return len(self.running.get(job_id, ())) + (len(held) if held else 0)

    def in_flight(self, job_id: int) -> list[int]:
        return self.running.get(job_id, [])

    def admit(self, fire: Fire) -> bool:
        """Whether ``fire`` (of a job with an overlap policy) goes to the
        executor now: not while another execution of its job runs (it is
        held until that one finishes)."""
        running = self.running.setdefault(fire.job_id, [])
        if running:
            self.held.setdefault(fire.job_id, deque()).append(fire)
            return False
        running.append(fire.slot)
        return True

    def finished(self, results: Sequence[FireResult]) -> None:
        """Results drained from the executor: those executions are no longer
        in flight; a held fire of the same job is sent now."""
        if not self.running:
            return
        released: list[Fire] = []
        for result in results:
            running = self.running.get(result.job_id)
            if running is None or result.slot not in running:
                continue
            running.remove(result.slot)
            if running:
                continue
            waiting = self.held.get(result.job_id)
            if waiting:
                fire = waiting.popleft()
                if not waiting:
                    del self.held[result.job_id]
                running.append(fire.slot)
                released.append(fire)
            else:
                del self.running[result.job_id]
        if released:
            self._executor.submit(released)
