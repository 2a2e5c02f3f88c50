"""The scheduling-side policies as pure functions: bounds, one-shot and manual
specs, catch-up, run limits and jitter offsets. No clock is read: every
instant is given."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler0.daemon.scheduling.cron import (
    NEVER,
    BoundedSchedule,
    ManualSchedule,
    OneShotSchedule,
    Schedule,
    parse_schedule,
    resume_slot,
    validate_schedule,
)
from scheduler0.daemon.scheduling.misfire import (
    CATCHUP_FIRES,
    MISSED_LISTED,
    CaughtUp,
    catch_up,
    due_slots,
    following_if_on_time,
)
from scheduler0.daemon.scheduling.policy import (
    TooManySlots,
    jitter_offset,
    job_next_run,
    job_schedule,
    policy_of,
    slots_between,
)
from scheduler0.daemon.state.schema import encode_policy

pytestmark = pytest.mark.unit

T0 = 1_800_000_000  # 2027-01-15T08:00:00Z, a multiple of 3600
EVERY_10S = parse_schedule("@every 10s", "UTC", T0)
EVERY_MINUTE = parse_schedule("* * * * *", "UTC")


# -- start_at / end_at ------------------------------------------------------------------


def test_a_bounded_grid_has_no_slot_before_its_start_or_after_its_end() -> None:
    bounded = BoundedSchedule(EVERY_MINUTE, T0 + 90.5, T0 + 300)
    assert bounded.next_after(0) == T0 + 120  # the first minute at or after the start
    assert bounded.next_after(T0 + 120) == T0 + 180
    assert bounded.next_after(T0 + 240) == T0 + 300  # the end itself is in
    assert bounded.next_after(T0 + 300) == NEVER
    assert BoundedSchedule(EVERY_MINUTE, T0 + 60, None).next_after(T0) == T0 + 60
    assert BoundedSchedule(EVERY_MINUTE, None, T0 + 59).next_after(T0) == NEVER


def test_a_jobs_schedule_applies_its_stored_bounds() -> None:
    stored = encode_policy({"start_at": T0 + 600.0, "end_at": T0 + 900.0})
    schedule = job_schedule("@every 10s", "UTC", T0, stored)
    assert schedule.next_after(T0) == T0 + 600
    assert job_next_run("@every 10s", "UTC", T0, stored, T0, T0 + 900, 31) == NEVER
    assert job_schedule("@every 10s", "UTC", T0, None).next_after(T0) == T0 + 10


# -- @at and @manually ------------------------------------------------------------------


def test_an_at_spec_has_one_slot_then_none() -> None:
    once = validate_schedule("@at 2027-01-15T09:00:00+01:00", "Europe/Paris")
    assert isinstance(once, OneShotSchedule) and once.at == T0
    assert once.next_after(0) == T0
    assert once.next_after(T0 - 1) == T0
    assert once.next_after(T0) == NEVER
    assert resume_slot(once, T0 - 100, None) == T0
    assert resume_slot(once, T0 - 100, T0) == NEVER  # it fired: never again
    assert parse_schedule("@AT 2027-01-15T08:00:00.2Z").next_after(0) == T0 + 1  # rounded up


def test_a_manual_spec_never_has_a_slot() -> None:
    manual = validate_schedule("@manually", "UTC")
    assert isinstance(manual, ManualSchedule)
    assert manual.next_after(0) == NEVER and resume_slot(manual, T0, None) == NEVER


# -- max_runs -----------------------------------------------------------------------------


def test_a_job_with_no_run_left_has_no_next_slot() -> None:
    stored = encode_policy({"max_runs": 3})
    assert policy_of(stored).runs_left(2) == 1
    assert job_next_run("@every 10s", "UTC", T0, stored, T0, T0 + 20, 2) == T0 + 30
    assert job_next_run("@every 10s", "UTC", T0, stored, T0, T0 + 30, 3) == NEVER


# -- catch-up -------------------------------------------------------------------------------


def test_catchup_latest_is_todays_misfire_policy() -> None:
    slot, now = T0 + 10, T0 + 52.5  # slots +10 .. +50 due
    expected = due_slots(EVERY_10S, slot, now, 60)
    got = catch_up(EVERY_10S, slot, now, 60, "latest")
    assert got == CaughtUp([expected.fire], expected.listed, 0, expected.following)
    assert got.fires == [T0 + 50] and got.listed == [T0 + 10, T0 + 20, T0 + 30, T0 + 40]


def test_catchup_all_fires_every_slot_within_the_window_in_order() -> None:
    slot, now = T0 + 10, T0 + 100.5  # slots +10 .. +100 due; window 45 s: +60 .. +100
    got = catch_up(EVERY_10S, slot, now, 45, "all")
    assert got == CaughtUp(
        [T0 + 60, T0 + 70, T0 + 80, T0 + 90, T0 + 100],
        [T0 + 10, T0 + 20, T0 + 30, T0 + 40, T0 + 50],
        0,
        T0 + 110,
    )
    cron = catch_up(EVERY_MINUTE, T0, T0 + 180.5, 600, "all")
    assert cron == CaughtUp([T0, T0 + 60, T0 + 120, T0 + 180], [], 0, T0 + 240)


def test_catchup_all_fires_a_long_backlog_a_batch_per_call() -> None:
    now = T0 + 10 * (CATCHUP_FIRES + 50) + 0.5
    first = catch_up(EVERY_10S, T0 + 10, now, 86400, "all")
    assert first.fires == [T0 + 10 * k for k in range(1, CATCHUP_FIRES + 1)]
    assert first.following == T0 + 10 * (CATCHUP_FIRES + 1)  # still due: the next call
    rest = catch_up(EVERY_10S, first.following, now, 86400, "all")
    assert rest.fires == [T0 + 10 * k for k in range(CATCHUP_FIRES + 1, CATCHUP_FIRES + 51)]
    assert rest.following > now and (rest.listed, rest.uncounted) == ([], 0)


def test_catchup_all_counts_what_lies_beyond_the_window_as_missed() -> None:
    now = T0 + 10 * (MISSED_LISTED + 30) + 0.5
    got = catch_up(EVERY_10S, T0 + 10, now, 25, "all")  # the last 3 slots in the window
    assert got.fires == [now - 20.5, now - 10.5, now - 0.5]
    assert len(got.listed) == MISSED_LISTED and got.listed[-1] == now - 30.5
    assert got.uncounted == MISSED_LISTED + 30 - 3 - MISSED_LISTED


def test_catchup_none_fires_only_an_on_time_slot() -> None:
    assert catch_up(EVERY_10S, T0 + 10, T0 + 12, 60, "none") == CaughtUp([T0 + 10], [], 0, T0 + 20)
    several = catch_up(EVERY_10S, T0 + 10, T0 + 42, 60, "none")
    assert several == CaughtUp([], [T0 + 10, T0 + 20, T0 + 30, T0 + 40], 0, T0 + 50)


def test_catchup_none_keeps_the_listed_missed_slots_bounded() -> None:
    now = T0 + 10 * MISSED_LISTED + 0.5  # MISSED_LISTED slots due, the latest on time
    got = catch_up(EVERY_10S, T0 + 10, now, 60, "none")
    assert got.fires == [] and len(got.listed) == MISSED_LISTED and got.uncounted == 0
    more = catch_up(EVERY_10S, T0 + 10, now + 10, 60, "none")
    assert len(more.listed) == MISSED_LISTED and more.uncounted == 1
    assert more.listed[-1] == T0 + 10 * (MISSED_LISTED + 1)


def test_the_window_decides_how_late_a_slot_may_fire() -> None:
    late = T0 + 10 + 90  # the only due slot... and nine more: +10 .. +100
    assert catch_up(EVERY_MINUTE, T0, T0 + 90, 60, "latest").fires == [T0 + 60]
    assert catch_up(EVERY_MINUTE, T0, T0 + 150, 60, "latest").fires == [T0 + 120]
    assert catch_up(EVERY_MINUTE, T0, T0 + 100, 30, "latest") == CaughtUp(
        [], [T0, T0 + 60], 0, T0 + 120
    )
    assert catch_up(EVERY_10S, T0 + 10, late, 5, "all").fires == [T0 + 100]


def test_the_last_run_allowed_leaves_no_next_slot() -> None:
    assert catch_up(EVERY_10S, T0 + 10, T0 + 10.5, 60, "latest", runs_left=1) == CaughtUp(
        [T0 + 10], [], 0, NEVER
    )
    assert catch_up(EVERY_10S, T0 + 10, T0 + 40.5, 60, "all", runs_left=2) == CaughtUp(
        [T0 + 10, T0 + 20], [], 0, NEVER
    )
    assert catch_up(EVERY_10S, T0 + 10, T0 + 40.5, 60, "all", runs_left=5).following == T0 + 50


def test_a_bounded_grid_stops_catching_up_at_its_end() -> None:
    bounded = BoundedSchedule(EVERY_10S, None, T0 + 30)
    got = catch_up(bounded, T0 + 10, T0 + 100, 600, "all")
    assert got == CaughtUp([T0 + 10, T0 + 20, T0 + 30], [], 0, NEVER)
    assert catch_up(bounded, T0 + 10, T0 + 100, 600, "latest") == CaughtUp(
        [T0 + 30], [T0 + 10, T0 + 20], 0, NEVER
    )


# -- jitter -----------------------------------------------------------------------------------


def test_a_jitter_offset_is_fixed_per_job_and_slot_and_within_bounds() -> None:
    offsets = [jitter_offset(7, T0 + 60 * k, 30) for k in range(500)]
    assert all(0 <= o <= 30 for o in offsets)
    assert offsets == [jitter_offset(7, T0 + 60 * k, 30) for k in range(500)]
    assert len(set(offsets)) == 31  # every offset 0..30 occurs: spread, not one value
    assert [jitter_offset(8, T0 + 60 * k, 30) for k in range(500)] != offsets
    assert jitter_offset(7, T0, 0) == 0


def test_a_jitter_offset_does_not_depend_on_the_process() -> None:
    """Fixed values: a change of the hash would move every jittered job's
    callbacks (and two nodes of different versions would disagree)."""
    assert [jitter_offset(1, T0 + k, 3600) for k in range(4)] == KNOWN_OFFSETS


KNOWN_OFFSETS = [2733, 3021, 486, 148]
"""blake2b (8 bytes) of '<job>:<slot>', big-endian, modulo jitter_seconds + 1."""


SCHEDULES = [
    EVERY_10S,
    EVERY_MINUTE,
    parse_schedule("*/7 * * * * *", "UTC"),
    BoundedSchedule(parse_schedule("0 */2 * * *", "Europe/Paris"), T0 + 3600, T0 + 86400),
]


@given(
    schedule=st.sampled_from(SCHEDULES),
    start=st.integers(0, 100_000),
    late=st.floats(0, 20_000, allow_nan=False),
    window=st.sampled_from([1.0, 5.0, 60.0, 3600.0]),
    catchup=st.sampled_from(["latest", "all", "none"]),
)
@settings(max_examples=300, deadline=None)
def test_the_on_time_shortcut_agrees_with_every_catchup(
    schedule: Schedule, start: int, late: float, window: float, catchup: str
) -> None:
    """The scheduler fires one on-time slot without ``catch_up`` whatever the
    job's catchup: that must be what ``catch_up`` would have answered."""
    slot = schedule.next_after(T0 + start)
    if slot >= NEVER:
        return
    now = slot + late
    shortcut = following_if_on_time(schedule, slot, now, window)
    if shortcut is not None:
        assert catch_up(schedule, slot, now, window, catchup) == CaughtUp([slot], [], 0, shortcut)


@given(
    schedule=st.sampled_from(SCHEDULES),
    start=st.integers(0, 100_000),
    late=st.floats(0, 20_000, allow_nan=False),
    window=st.sampled_from([1.0, 5.0, 60.0, 3600.0]),
    catchup=st.sampled_from(["latest", "all", "none"]),
)
@settings(max_examples=300, deadline=None)
def test_every_catchup_fires_due_slots_within_the_window_in_order_after_the_missed_ones(
    schedule: Schedule, start: int, late: float, window: float, catchup: str
) -> None:
    slot = schedule.next_after(T0 + start)
    if slot >= NEVER:
        return
    now = slot + late
    got = catch_up(schedule, slot, now, window, catchup)
    assert got.fires == sorted(set(got.fires))
    assert all(slot <= f <= now and now - f <= window for f in got.fires)
    assert got.listed == sorted(set(got.listed)) and len(got.listed) <= MISSED_LISTED
    assert all(missed < fired for missed in got.listed for fired in got.fires)
    assert set(got.listed).isdisjoint(got.fires)
    if catchup != "all":
        assert len(got.fires) <= 1
    if len(got.fires) < CATCHUP_FIRES:
        assert got.following > now  # nothing due is left behind
    else:
        assert got.following > got.fires[-1]


# -- backfill: the slots of a range ---------------------------------------------------------


def test_a_backfill_range_holds_every_slot_of_the_grid_with_both_ends() -> None:
    hourly = parse_schedule("0 * * * *", "UTC")
    assert slots_between(hourly, T0, T0 + 3 * 3600, 100) == [T0 + h * 3600 for h in range(4)]
    # Ends between slots: only the slots inside; a fractional start rounds up.
    assert slots_between(hourly, T0 + 0.5, T0 + 3 * 3600 - 1, 100) == [T0 + 3600, T0 + 7200]
    assert slots_between(hourly, T0 + 1, T0 + 3599, 100) == []


def test_a_backfill_range_respects_start_at_and_end_at_and_the_every_anchor() -> None:
    bounded = job_schedule(
        "@every 10s",
        "UTC",
        T0,
        encode_policy({"start_at": T0 + 30.0, "end_at": T0 + 60.0}),
    )
    assert slots_between(bounded, T0 - 100, T0 + 100, 100) == [T0 + 30, T0 + 40, T0 + 50, T0 + 60]
    # @every has no slot before its anchor (its first slot is one period after it).
    assert slots_between(EVERY_10S, T0 - 100, T0 + 20, 100) == [T0 + 10, T0 + 20]


def test_a_backfill_range_of_a_one_shot_holds_its_one_slot_and_manual_none() -> None:
    at = parse_schedule("@at 2027-01-15T08:00:05Z", "UTC")
    assert slots_between(at, T0, T0 + 3600, 100) == [T0 + 5]
    assert slots_between(at, T0 + 6, T0 + 3600, 100) == []
    assert slots_between(ManualSchedule("@manually"), T0, T0 + 3600, 100) == []


def test_a_backfill_range_past_its_limit_stops_at_the_limit() -> None:
    every_second = parse_schedule("@every 1s", "UTC", T0)
    assert len(slots_between(every_second, T0, T0 + 99, 100)) == 99
    assert len(slots_between(every_second, T0, T0 + 100, 100)) == 100
    with pytest.raises(TooManySlots) as refused:
        slots_between(every_second, T0, T0 + 10**9, 100)  # not walked to the end
    assert (refused.value.limit, refused.value.last) == (100, T0 + 100)
