"""The misfire policy, as pure functions of one job's due slots.

When more than one slot of a job is due at once (after a restart, a takeover
or a stall), the latest due slot fires if it is no older than the misfire
grace; every other due slot is recorded ``missed``. At most ``MISSED_LISTED``
missed slots per job and tick become execution rows (the latest ones); the
rest only add to the job's ``missed_count``.

Both functions read no clock and no state, and run on the hot path, once per
fire. ``following_if_on_time`` answers the common case (exactly one slot due,
within the grace) with one int; only otherwise does the caller need
``due_slots`` and its ``DueSlots``. (A ``DueSlots`` built for every fire costs
~3,000 more CPU instructions per fire, ~9% of the scheduler's work per fire;
the shortcut also skips the empty list and tuple the common case used to build.)
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from scheduler0.daemon.scheduling.cron import EverySchedule, Schedule

MISSED_LISTED = 100
"""Missed slots of one job listed one by one (as ``missed`` rows) per tick."""
SCAN_LIMIT = 10_000
"""Cron slots walked one by one at most; past that the backlog is not counted."""


class DueSlots(NamedTuple):
    """How a job's due slots split."""

    fire: int | None
    """The slot to fire, or None when even the latest due slot is past the grace."""
    listed: list[int]
    """Missed slots to record one by one: at most ``MISSED_LISTED``, ascending."""
    uncounted: int
    """Further missed slots, only counted."""
    following: int
    """The job's next slot: the first one after ``now``."""


def following_if_on_time(schedule: Schedule, slot: int, now: float, grace: float) -> int | None:
    """If ``slot`` (``<= now``) is the only due slot and within the grace, the
    job's next slot after it; else None. Whenever it returns ``f``,
    ``due_slots(schedule, slot, now, grace)`` is ``DueSlots(slot, [], 0, f)``."""
    if now - slot > grace:
        return None
    if isinstance(schedule, EverySchedule):
        following = slot + schedule.period
    else:
        following = schedule.next_after(slot)
    return following if following > now else None


def due_slots(schedule: Schedule, slot: int, now: float, grace: float) -> DueSlots:
    """Split the due slots of ``schedule`` from ``slot`` (the job's next slot,
    ``slot <= now``) up to ``now``: the latest fires if ``now - latest <= grace``,
    every earlier one (and the latest, if too old) is missed."""
    if isinstance(schedule, EverySchedule):
        period = schedule.period
        due = int((now - slot) // period) + 1
        latest = slot + (due - 1) * period
        following = latest + period
        first_listed = max(slot, latest - MISSED_LISTED * period)
        listed = list(range(first_listed, latest, period))
        uncounted = due - 1 - len(listed)
    else:
        recent: deque[int] = deque(maxlen=MISSED_LISTED + 1)
        count = 0
        while slot <= now and count < SCAN_LIMIT:
            recent.append(slot)
            slot = schedule.next_after(slot)
            count += 1
        if slot <= now:  # an enormous backlog: give up counting, resume after now
            slot = schedule.next_after(int(now))
        following = slot
        latest = recent.pop()
        listed = list(recent)
        uncounted = count - 1 - len(listed)
    if now - latest > grace:
        listed.append(latest)
        return DueSlots(
            None,
            listed[-MISSED_LISTED:],
            uncounted + max(0, len(listed) - MISSED_LISTED),
            following,
        )
    return DueSlots(latest, listed, uncounted, following)
