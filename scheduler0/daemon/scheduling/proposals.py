"""Proposing without waiting: a tick never blocks on the log.

Every part of the scheduler proposes through one ``Proposer``: the command goes
to the log at once and the part's handler gets the ``Outcome`` on the event
loop once the log has a verdict. There is no deadline (``WAIT_FOR_VERDICT``):
an undecided proposal simply stays in flight, and each part decides what it
does meanwhile (firing proposes nothing new, results keep batching).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from scheduler0.daemon.replication import WAIT_FOR_VERDICT, ReplicatedLog
from scheduler0.daemon.state import commands as c
from scheduler0.errors import Scheduler0Error

log = logging.getLogger(__name__)


class Outcome(NamedTuple):
    """A proposal's verdict: its apply result, or the error that stands for it
    (``NotCommitted``: ambiguous, it may still be applied later; any other
    ``Scheduler0Error``: committed and changed nothing)."""

    result: Any
    error: Scheduler0Error | None


class Proposer:
    """Owns the tasks of proposals in flight (so none is garbage collected)."""

    def __init__(self, log: ReplicatedLog) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()

    def propose(self, command: c.Command, then: Callable[[Outcome], None]) -> None:
        """Propose without waiting: ``then`` gets the outcome on the event loop once
        the log has a verdict (no deadline: an undecided fire stays in flight).
        Call on the event loop."""

        async def run() -> None:
            try:
                outcome = Outcome(await self._log.propose(command, WAIT_FOR_VERDICT), None)
            except Scheduler0Error as exc:
                outcome = Outcome(None, exc)
            try:
                then(outcome)
            except Exception:
                log.exception("handling the outcome of %s failed", command.type_name)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def ignore(outcome: Outcome) -> None:
    """For proposals whose outcome changes nothing here."""
    return None
