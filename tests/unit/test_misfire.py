"""The misfire policy as a pure function: which due slot fires, which are missed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler0.daemon.scheduling.cron import Schedule, parse_schedule
from scheduler0.daemon.scheduling.misfire import (
    MISSED_LISTED,
    SCAN_LIMIT,
    DueSlots,
    due_slots,
    following_if_on_time,
)

pytestmark = pytest.mark.unit

T0 = 1_800_000_000  # a multiple of 60 (and of 3600): cron grids line up with it
EVERY_10S = parse_schedule("@every 10s", "UTC", T0)
EVERY_MINUTE = parse_schedule("* * * * *", "UTC")


def test_one_due_slot_on_time_fires_and_nothing_is_missed() -> None:
    slot = T0 + 10
    assert due_slots(EVERY_10S, slot, slot + 0.5, 60) == DueSlots(slot, [], 0, slot + 10)
    assert following_if_on_time(EVERY_10S, slot, slot + 0.5, 60) == slot + 10
    assert due_slots(EVERY_MINUTE, T0, T0 + 1, 60) == DueSlots(T0, [], 0, T0 + 60)
    assert following_if_on_time(EVERY_MINUTE, T0, T0 + 1, 60) == T0 + 60


def test_the_latest_slot_within_grace_fires_and_earlier_ones_are_missed() -> None:
    slot = T0 + 10
    now = slot + 42.5  # slots +10 .. +50 are due (5), the latest 2.5 s ago
    assert due_slots(EVERY_10S, slot, now, 60) == DueSlots(
        slot + 40, [slot, slot + 10, slot + 20, slot + 30], 0, slot + 50
    )
    assert following_if_on_time(EVERY_10S, slot, now, 60) is None
    # cron: 3 minutes due, the latest 30 s ago
    assert due_slots(EVERY_MINUTE, T0, T0 + 150, 60) == DueSlots(
        T0 + 120, [T0, T0 + 60], 0, T0 + 180
    )


def test_when_every_due_slot_is_too_old_all_are_missed() -> None:
    slot = T0 + 10
    assert due_slots(EVERY_10S, slot, slot + 25, grace=4) == DueSlots(
        None, [slot, slot + 10, slot + 20], 0, slot + 30
    )
    assert following_if_on_time(EVERY_10S, slot, slot + 25, grace=4) is None
    # a single due slot past the grace is missed too
    assert due_slots(EVERY_10S, slot, slot + 5, grace=4) == DueSlots(None, [slot], 0, slot + 10)
    assert following_if_on_time(EVERY_10S, slot, slot + 5, grace=4) is None
    assert due_slots(EVERY_MINUTE, T0, T0 + 150, 10) == DueSlots(
        None, [T0, T0 + 60, T0 + 120], 0, T0 + 180
    )


def test_a_slot_exactly_at_the_grace_still_fires() -> None:
    slot = T0 + 10
    assert due_slots(EVERY_10S, slot, slot + 4, grace=4) == DueSlots(slot, [], 0, slot + 10)
    assert following_if_on_time(EVERY_10S, slot, slot + 4, grace=4) == slot + 10
    assert due_slots(EVERY_10S, slot, slot + 4.001, grace=4).fire is None
    assert following_if_on_time(EVERY_10S, slot, slot + 4.001, grace=4) is None
    # the next slot falling due exactly now makes two due slots
    assert following_if_on_time(EVERY_10S, slot, slot + 10, grace=60) is None
    assert due_slots(EVERY_10S, slot, slot + 10, grace=60) == DueSlots(
        slot + 10, [slot], 0, slot + 20
    )


def test_at_most_100_missed_slots_are_listed_the_rest_only_counted() -> None:
    slot = T0 + 10
    due = 250
    now = slot + (due - 1) * 10 + 1  # 250 slots due, the latest 1 s ago
    result = due_slots(EVERY_10S, slot, now, 60)
    latest = slot + (due - 1) * 10
    assert result.fire == latest
    assert result.listed == list(range(latest - MISSED_LISTED * 10, latest, 10))  # the latest 100
    assert result.uncounted == due - 1 - MISSED_LISTED
    # all too old: the latest is listed too, and one more earlier slot is uncounted
    old = due_slots(EVERY_10S, slot, now, grace=0.5)
    assert old.fire is None
    assert old.listed == list(range(latest - (MISSED_LISTED - 1) * 10, latest + 1, 10))
    assert old.uncounted == due - MISSED_LISTED
    # cron, 150 minutes due
    minutes = due_slots(EVERY_MINUTE, T0, T0 + 149 * 60 + 5, 60)
    assert minutes.fire == T0 + 149 * 60
    assert minutes.listed == [T0 + m * 60 for m in range(49, 149)]
    assert minutes.uncounted == 49
    assert minutes.following == T0 + 150 * 60


def test_a_cron_backlog_beyond_the_scan_limit_still_fires_and_lists_its_latest_slots() -> None:
    latest = T0 + (SCAN_LIMIT + 500) * 60
    result = due_slots(EVERY_MINUTE, T0, latest + 7, 60)
    assert result.fire == latest  # 7 s old: within the grace
    assert result.listed == [T0 + m * 60 for m in range(SCAN_LIMIT + 400, SCAN_LIMIT + 500)]
    # walked: the limit, then 2 * (MISSED_LISTED + 1) slots up to the latest;
    # the stretch between goes uncounted
    assert result.uncounted == SCAN_LIMIT + 2 * (MISSED_LISTED + 1) - 1 - MISSED_LISTED
    assert result.following == latest + 60
    late = due_slots(EVERY_MINUTE, T0, latest + 45, 30)
    assert late.fire is None  # 45 s old: past the grace, so the latest is missed too
    assert late.listed[-1] == latest
    assert late.following == latest + 60


def test_cron_in_a_timezone_follows_its_wall_clock() -> None:
    daily = parse_schedule("30 9 * * *", "America/New_York")
    first = daily.next_after(T0)
    three_days_later = daily.next_after(daily.next_after(daily.next_after(first)))
    result = due_slots(daily, first, three_days_later + 10, 3600)
    assert result.fire == three_days_later
    assert result.listed == [
        first,
        daily.next_after(first),
        daily.next_after(daily.next_after(first)),
    ]
    assert result.following == daily.next_after(three_days_later)


SCHEDULES = [
    parse_schedule("@every 1s", "UTC", T0),
    parse_schedule("@every 7s", "UTC", T0 + 3),
    parse_schedule("@every 1h", "UTC", T0),
    parse_schedule("*/5 * * * *", "UTC"),
    parse_schedule("*/10 * * * * *", "UTC"),
    parse_schedule("0 30 9 * * 1-5", "Europe/Berlin"),
]


@settings(max_examples=300, deadline=None)
@given(
    schedule=st.sampled_from(SCHEDULES),
    start=st.integers(0, 400_000),
    late=st.floats(0, 40_000, allow_nan=False),
    grace=st.sampled_from([0.0, 1.0, 5.0, 60.0, 3600.0]),
)
def test_the_on_time_shortcut_agrees_with_the_full_policy(
    schedule: Schedule, start: int, late: float, grace: float
) -> None:
    slot = schedule.next_after(T0 + start)
    now = slot + late
    full = due_slots(schedule, slot, now, grace)
    shortcut = following_if_on_time(schedule, slot, now, grace)
    if shortcut is None:
        assert full.fire != slot or full.listed or full.uncounted
    else:
        assert full == DueSlots(slot, [], 0, shortcut)
    # and the policy's own invariants
    assert full.following > now
    assert full.listed == sorted(full.listed) and len(full.listed) <= MISSED_LISTED
    assert all(s <= now for s in full.listed)
    if full.fire is not None:
        assert now - full.fire <= grace
        assert not full.listed or full.listed[-1] < full.fire
    every = getattr(schedule, "period", None)
    if every is not None:  # every due slot is accounted for exactly once
        due = int((now - slot) // every) + 1
        assert len(full.listed) + full.uncounted + (full.fire is not None) == due
