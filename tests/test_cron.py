"""Next-fire maths: scheduler0.daemon.scheduling.cron."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from scheduler0.daemon.scheduling.cron import (
    CronSchedule,
    EverySchedule,
    Schedule,
    ScheduleError,
    parse_duration,
    parse_schedule,
    validate_schedule,
    validate_timezone,
)

UTC = dt.UTC
NY = ZoneInfo("America/New_York")


def ts(*args: int, tz: dt.tzinfo = UTC) -> int:
    return int(dt.datetime(*args, tzinfo=tz).timestamp())  # type: ignore[arg-type,misc]


def local(t: int, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(t, tz).isoformat()


def fires(spec: str, start: int, n: int, tz: str = "UTC", anchor: int = 0) -> list[int]:
    sched = parse_schedule(spec, tz, anchor)
    out: list[int] = []
    t = start
    for _ in range(n):
        t = sched.next_after(t)
        out.append(t)
    return out


# --------------------------------------------------------------------------- #
# examples


T0 = ts(2024, 1, 1)  # Monday 2024-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("*/5 * * * *", T0, [ts(2024, 1, 1, 0, 5), ts(2024, 1, 1, 0, 10), ts(2024, 1, 1, 0, 15)]),
        ("*/5 * * * *", T0 + 150, [ts(2024, 1, 1, 0, 5), ts(2024, 1, 1, 0, 10)]),
        ("*/5 * * * *", T0 - 1, [T0, ts(2024, 1, 1, 0, 5)]),
        ("* * * * *", T0 + 59, [T0 + 60, T0 + 120]),
        ("0 9 * * 1-5", ts(2024, 1, 5, 9), [ts(2024, 1, 8, 9), ts(2024, 1, 9, 9)]),
        ("30 2 1 * *", T0, [ts(2024, 1, 1, 2, 30), ts(2024, 2, 1, 2, 30), ts(2024, 3, 1, 2, 30)]),
        ("0 0 29 2 *", T0, [ts(2024, 2, 29), ts(2028, 2, 29)]),
        ("0 12 * jan,jul sun", T0, [ts(2024, 1, 7, 12), ts(2024, 1, 14, 12)]),
        # dom and dow both restricted without a star: either matches
        ("0 0 13 * 5", T0, [ts(2024, 1, 5), ts(2024, 1, 12), ts(2024, 1, 13), ts(2024, 1, 19)]),
        ("0 0 1-7 * 1", ts(2024, 1, 6), [ts(2024, 1, 7), ts(2024, 1, 8), ts(2024, 1, 15)]),
        # either day field starred (*, */n, ?): both must match (Vixie cron, robfig/cron)
        ("0 0 */2 * 1", T0 - 1, [T0, ts(2024, 1, 15), ts(2024, 1, 29), ts(2024, 2, 5)]),
        ("0 0 ? * 1", T0, [ts(2024, 1, 8), ts(2024, 1, 15)]),
        ("0 0 * * */2", T0, [ts(2024, 1, 2), ts(2024, 1, 4), ts(2024, 1, 6), ts(2024, 1, 7)]),
        ("0 0 12 */10 * 5", T0, [ts(2024, 3, 1, 12), ts(2024, 5, 31, 12)]),
        ("59 23 31 12 *", T0, [ts(2024, 12, 31, 23, 59), ts(2025, 12, 31, 23, 59)]),
        # 6 fields: seconds first
        ("*/10 * * * * *", T0, [T0 + 10, T0 + 20, T0 + 30]),
        ("*/10 * * * * *", T0 + 55, [T0 + 60, T0 + 70]),
        ("* * * * * *", T0, [T0 + 1, T0 + 2, T0 + 3]),
        ("0 30 9 * * 1-5", ts(2024, 1, 5, 9, 30), [ts(2024, 1, 8, 9, 30), ts(2024, 1, 9, 9, 30)]),
        ("15 0 0 * * *", T0, [T0 + 15, ts(2024, 1, 2, 0, 0, 15)]),
        ("0 0 12 1 1 ?", T0, [ts(2024, 1, 1, 12), ts(2025, 1, 1, 12)]),
        # an equal range is that one value (croniter alone would read the whole cycle)
        ("0 9 * * 1-1", T0, [ts(2024, 1, 1, 9), ts(2024, 1, 8, 9)]),
        ("0 0 9 * * MON-mon", T0, [ts(2024, 1, 1, 9), ts(2024, 1, 8, 9)]),
        ("0 0 1 1-1/3 *", T0 - 1, [T0, ts(2025, 1, 1)]),
        ("5,35 */20 * * * *", T0, [T0 + 5, T0 + 35, T0 + 1205, T0 + 1235, T0 + 2405]),
        # croniter's extensions stay available
        ("0 0 L * *", T0, [ts(2024, 1, 31), ts(2024, 2, 29), ts(2024, 3, 31)]),
        ("0 10 * * 1#2", T0, [ts(2024, 1, 8, 10), ts(2024, 2, 12, 10)]),
        # ... under the same day rule: the last day that is a Sun/Tue/Thu/Sat, and
        # the last day of the month or any Friday
        ("0 0 L * */2", T0, [ts(2024, 2, 29), ts(2024, 3, 31), ts(2024, 4, 30)]),
        ("0 0 L * 5", ts(2024, 1, 20), [ts(2024, 1, 26), ts(2024, 1, 31), ts(2024, 2, 2)]),
    ],
)
def test_cron_examples_utc(spec: str, after: int, expected: list[int]) -> None:
    assert fires(spec, after, len(expected)) == expected


def test_day_fields_follow_vixie_cron_and_robfig() -> None:
    # robfig/cron's parser test: a starred day of month (*/5) must match along
    # with the day of week, so Monday 2012-08-06 (croniter: Wednesday 2012-08-01)
    after = ts(2012, 7, 9, 23, 35)
    assert fires("0 0 0 */5 Apr,Aug,Oct Mon", after, 3) == [
        ts(2012, 8, 6),
        ts(2012, 10, 1),
        ts(2013, 4, 1),
    ]
    assert fires("0 0 */5 Apr,Aug,Oct Mon", after, 1) == [ts(2012, 8, 6)]
    assert croniter("0 0 */5 Apr,Aug,Oct Mon", dt.datetime(2012, 7, 9, 23, 35)).get_next(
        dt.datetime
    ) == dt.datetime(2012, 8, 1)


def test_nth_weekday_with_a_day_of_month_needs_both() -> None:
    # a # (or W) form with the other day field restricted needs both (Vixie cron has no #);
    # croniter's day_or=True would drop the day of month: every third Friday
    assert fires("0 0 15 * 5#3", ts(2026, 1, 1), 3) == [
        ts(2026, 5, 15),  # a 15th that is the third Friday
        ts(2027, 1, 15),
        ts(2027, 10, 15),
    ]
    assert fires("0 0 1 * mon#1", ts(2026, 1, 1), 2) == [ts(2026, 6, 1), ts(2027, 2, 1)]
    assert fires("0 0 15W * 5", ts(2026, 1, 1), 2) == [ts(2026, 5, 15), ts(2026, 8, 14)]
    assert in_zone("7 3 29 2 mon#5", "Europe/Paris", "2025-12-01T00:00", 2) == [
        "2044-02-29T03:07:00+01:00",  # a 29 February that is a Monday
        "2072-02-29T03:07:00+01:00",
    ]
    with pytest.raises(ScheduleError, match="never fires"):
        parse_schedule("0 10 15 * 1#2", "UTC")  # a second Monday is never the 15th


@pytest.mark.parametrize(
    ("spec", "means"),
    [
        ("0 05-5 * * *", "0 5 * * *"),
        ("0 5-05/2 * * *", "0 5 * * *"),
        ("0 0 1 feb-2 *", "0 0 1 2 *"),
        ("0 0 1 12-dec *", "0 0 1 12 *"),
        ("0 0 * * sun-0", "0 0 * * 0"),
        ("0 0 * * 7-sun", "0 0 * * 0"),
        ("0 0 * * mon-1", "0 0 * * 1"),
        ("0 0 * * sun-7", "0 0 * * *"),  # 0-7: the whole week, not an equal range
    ],
)
def test_an_equal_range_means_its_one_value_however_its_ends_are_spelled(
    spec: str, means: str
) -> None:
    assert fires(spec, ts(2026, 1, 1), 6) == fires(means, ts(2026, 1, 1), 6)


def test_far_slots_in_a_dst_zone() -> None:
    # decades of DST transitions between two slots, crossed without one search per offset change
    assert in_zone("30 2 29 2 *", "Europe/Paris", "2025-03-01T00:00", 2) == [
        "2028-02-29T02:30:00+01:00",
        "2032-02-29T02:30:00+01:00",
    ]
    assert in_zone("0 0 1 1 *", "Australia/Lord_Howe", "2024-01-01T00:00", 2) == [
        "2025-01-01T00:00:00+11:00",
        "2026-01-01T00:00:00+11:00",
    ]


def test_cron_in_a_timezone() -> None:
    tz = ZoneInfo("Asia/Kolkata")  # UTC+05:30, no DST
    got = fires("0 9 * * *", ts(2024, 1, 1), 2, "Asia/Kolkata")
    assert got == [ts(2024, 1, 1, 9, tz=tz), ts(2024, 1, 2, 9, tz=tz)]
    assert got[0] == ts(2024, 1, 1, 3, 30)
    got = fires("0 30 9 * * 1-5", ts(2024, 7, 5, 14), 1, "America/New_York")
    assert local(got[0], NY) == "2024-07-08T09:30:00-04:00"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@yearly", [ts(2025, 1, 1), ts(2026, 1, 1)]),
        ("@annually", [ts(2025, 1, 1), ts(2026, 1, 1)]),
        ("@monthly", [ts(2024, 6, 1), ts(2024, 7, 1)]),
        ("@weekly", [ts(2024, 5, 19), ts(2024, 5, 26)]),  # Sundays
        ("@daily", [ts(2024, 5, 16), ts(2024, 5, 17)]),
        ("@midnight", [ts(2024, 5, 16), ts(2024, 5, 17)]),
        ("@hourly", [ts(2024, 5, 15, 11), ts(2024, 5, 15, 12)]),
        ("@HOURLY", [ts(2024, 5, 15, 11), ts(2024, 5, 15, 12)]),
        ("  @Daily ", [ts(2024, 5, 16), ts(2024, 5, 17)]),
    ],
)
def test_descriptors(spec: str, expected: list[int]) -> None:
    assert fires(spec, ts(2024, 5, 15, 10, 30), 2) == expected


def test_descriptor_in_timezone() -> None:
    got = fires("@daily", ts(2024, 5, 15, 12), 1, "America/New_York")
    assert local(got[0], NY) == "2024-05-16T00:00:00-04:00"


# --------------------------------------------------------------------------- #
# @every


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("90s", 90),
        ("1m", 60),
        ("1h30m10s", 5410),
        ("1.5h", 5400),
        ("1000ms", 1),
        ("2000000us", 2),
        ("1500ms500ms", 2),
        ("3000000000ns", 3),
        ("1000µs1999ms", 2),
        ("0.5m", 30),
        (".5m", 30),
        ("24h", 86400),
        ("72h", 259200),
        ("+1m", 60),
    ],
)
def test_parse_go_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    sched = parse_schedule(f"@every {text}", anchor=1000)
    assert isinstance(sched, EverySchedule)
    assert sched.period == seconds


@pytest.mark.parametrize(
    "text",
    ["", "1", "500ms", "1.5s", "0s", "-1m", "1x", "1 m", "m", "1h-1m", "1H", "1.", "0.1ns", "1e3s"],
)
def test_bad_go_duration(text: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(f"@every {text}")
    assert err.value.field == "spec"


def test_bad_duration_messages() -> None:
    with pytest.raises(ScheduleError, match="at least 1s"):
        parse_schedule("@every 500ms")
    with pytest.raises(ScheduleError, match="whole number of seconds"):
        parse_schedule("@every 1500ms")
    with pytest.raises(ScheduleError, match="Go syntax"):
        parse_schedule("@every 10 minutes")


def test_every_grid_is_anchored() -> None:
    anchor, p = 1_700_000_003, 90
    sched = parse_schedule("@every 1m30s", "UTC", anchor)
    assert sched.next_after(anchor - 1) == anchor + p
    assert sched.next_after(anchor - 10_000) == anchor + p  # first fire: one period after
    assert sched.next_after(anchor) == anchor + p
    assert sched.next_after(anchor + 1) == anchor + p
    assert sched.next_after(anchor + p - 1) == anchor + p
    for k in range(1, 50):
        assert sched.next_after(anchor + k * p) == anchor + (k + 1) * p
        assert sched.next_after(anchor + k * p - 1) == anchor + k * p


def test_every_three_days_resumes_on_grid() -> None:
    created = ts(2024, 3, 1, 13, 7, 11)
    sched = parse_schedule("@every 72h", "America/New_York", created)
    # the timezone does not bend the grid, even across the DST change
    assert sched.next_after(ts(2024, 3, 9)) == created + 3 * 259200
    assert sched.next_after(created + 3 * 259200) == created + 4 * 259200


def test_every_keyword_case_and_spacing() -> None:
    sched = parse_schedule("@EVERY  2m", anchor=0)
    assert sched.next_after(0) == 120
    assert sched.spec == "@EVERY  2m"


# --------------------------------------------------------------------------- #
# errors


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * * *", "expected 5 fields (crontab) or 6 (seconds first), got 4"),
        ("0 0 0 * * * *", "expected 5 fields (crontab) or 6 (seconds first), got 7"),
        ("every day", "got 2"),
        ("@often", "unknown descriptor"),
        ("@every", "duration"),
        ("60 * * * *", "minute value 60 out of range 0-59"),
        ("* 24 * * *", "hour value 24 out of range 0-23"),
        ("* * 0 * *", "day of month value 0 out of range 1-31"),
        ("* * 32 * *", "day of month value 32"),
        ("* * * 13 *", "month value 13"),
        ("* * * * 8", "day of week value 8"),
        ("60 * * * * *", "second value 60 out of range 0-59"),
        ("0 60 * * * *", "minute value 60"),
        ("*/0 * * * *", "step"),
        ("*/x * * * *", "step"),
        ("H * * * *", "hashed"),
        ("R * * * *", "hashed"),
        ("* * * foo *", "invalid cron spec"),
        ("5-1x * * * *", "invalid"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
        ("; rm -rf /x *", "invalid"),
    ],
)
def test_bad_specs_name_the_spec_field(spec: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(spec, "UTC")
    assert err.value.field == "spec"
    assert fragment in err.value.message
    assert str(err.value).startswith("spec: ")
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("*/60 * * * *", "minute step /60 is larger than the field's range"),
        ("*/61 * * * *", "minute step /61 is larger than the field's range"),
        ("5-10/60 * * * *", "(at most /59)"),
        ("0 */24 * * *", "hour step /24"),
        ("0 0 */31 * *", "day of month step /31"),
        ("0 0 1 */12 *", "month step /12"),
        ("0 0 * * */7", "day of week step /7"),
        ("*/60 * * * * *", "second step /60"),
        ("0 */60 * * * *", "minute step /60"),
        ("0 0 1/25 * * *", "hour step /25"),
        ("*/5,*/60 * * * *", "minute step /60"),
    ],
)
def test_steps_larger_than_the_field_are_refused_for_new_schedules(
    spec: str, fragment: str
) -> None:
    with pytest.raises(ScheduleError) as err:
        validate_schedule(spec, "UTC")
    assert err.value.field == "spec"
    assert fragment in err.value.message


def test_a_stored_job_with_a_large_step_keeps_its_meaning() -> None:
    # loading (parse_schedule) does not apply the rule: the step gives the first value
    assert fires("*/61 * * * *", T0, 3) == fires("0 * * * *", T0, 3)
    assert fires("0 */24 * * *", T0, 3) == fires("0 0 * * *", T0, 3)


def test_validate_schedule_applies_every_parse_check() -> None:
    assert isinstance(validate_schedule("*/59 * * * *", "UTC"), CronSchedule)
    assert isinstance(validate_schedule("@every 90s", "UTC"), EverySchedule)
    for spec, tz, field in [("61 * * * *", "UTC", "spec"), ("* * * * *", "Mars/Base", "timezone")]:
        with pytest.raises(ScheduleError) as err:
            validate_schedule(spec, tz)
        assert err.value.field == field


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*/59 * * * *", [ts(2024, 1, 1, 0, 59), ts(2024, 1, 1, 1, 0), ts(2024, 1, 1, 1, 59)]),
        ("0 */23 * * *", [ts(2024, 1, 1, 23), ts(2024, 1, 2, 0), ts(2024, 1, 2, 23)]),
        ("0 0 */30 * *", [ts(2024, 1, 31), ts(2024, 2, 1), ts(2024, 3, 1)]),
        ("0 0 1 */11 *", [ts(2024, 12, 1), ts(2025, 1, 1), ts(2025, 12, 1)]),
        ("0 0 * * */6", [ts(2024, 1, 6), ts(2024, 1, 7), ts(2024, 1, 13)]),
        ("*/59 * * * * *", [T0 + 59, T0 + 60, T0 + 119]),
    ],
)
def test_largest_steps_are_accepted(spec: str, expected: list[int]) -> None:
    validate_schedule(spec, "UTC")
    assert fires(spec, T0, 3) == expected


@pytest.mark.parametrize("tz", ["", "Mars/Olympus", "utc+1", "../../etc/passwd", "/etc/localtime"])
def test_bad_timezone_names_the_timezone_field(tz: str) -> None:
    with pytest.raises(ScheduleError) as err:
        validate_timezone(tz)
    assert err.value.field == "timezone"
    for spec in ("*/5 * * * *", "@every 1m", "@daily"):
        with pytest.raises(ScheduleError) as err:
            parse_schedule(spec, tz)
        assert err.value.field == "timezone"


def test_valid_timezone() -> None:
    assert validate_timezone("Europe/Paris") == ZoneInfo("Europe/Paris")


# --------------------------------------------------------------------------- #
# DST. Transitions (tzdata): America/New_York 2024-03-10 02:00 EST -> 03:00 EDT
# and 2024-11-03 02:00 EDT -> 01:00 EST; Europe/Paris 2024-03-31 02:00 CET ->
# 03:00 CEST and 2024-10-27 03:00 CEST -> 02:00 CET; Australia/Sydney (southern
# hemisphere) 2024-04-07 03:00 AEDT -> 02:00 AEST and 2024-10-06 02:00 AEST ->
# 03:00 AEDT; Australia/Lord_Howe (a 30-minute shift) 2024-04-07 02:00 +11 ->
# 01:30 +10:30 and 2024-10-06 02:00 +10:30 -> 02:30 +11. Expected instants are
# written by hand from these.


def in_zone(spec: str, zone: str, start: str, n: int) -> list[str]:
    """The next ``n`` slots after the local time ``start``, as local ISO times."""
    tz = ZoneInfo(zone)
    after = int(dt.datetime.fromisoformat(start).replace(tzinfo=tz).timestamp())
    return [local(t, tz) for t in fires(spec, after, n, zone)]


def ny(spec: str, start: dt.datetime, n: int) -> list[str]:
    return [local(t, NY) for t in fires(spec, int(start.timestamp()), n, "America/New_York")]


def test_dst_spring_forward_daily_0230() -> None:
    # 02:30 does not exist on 2024-03-10: the job fires once at 03:00 EDT
    assert ny("30 2 * * *", dt.datetime(2024, 3, 9, 12, tzinfo=NY), 3) == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:30:00-04:00",
        "2024-03-12T02:30:00-04:00",
    ]
    assert ny("0 30 2 * * *", dt.datetime(2024, 3, 9, 12, tzinfo=NY), 2) == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:30:00-04:00",
    ]
    # several slots in the gap still fire once
    assert ny("0,15,30,45 2 * * *", dt.datetime(2024, 3, 10, 1, tzinfo=NY), 2) == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:00:00-04:00",
    ]


def test_dst_fall_back_daily_0230_fires_once() -> None:
    assert ny("30 2 * * *", dt.datetime(2024, 11, 2, 12, tzinfo=NY), 3) == [
        "2024-11-03T02:30:00-05:00",
        "2024-11-04T02:30:00-05:00",
        "2024-11-05T02:30:00-05:00",
    ]


def test_dst_fall_back_fixed_time_fires_once_at_its_first_occurrence() -> None:
    # A daily billing job at 01:30 must not run twice on 2024-11-03 (croniter
    # and this module before it ran 01:30 EDT and again 01:30 EST). The hour
    # field names a fixed wall time, so the repeated hour fires only once.
    assert ny("30 1 * * *", dt.datetime(2024, 11, 2, 12, tzinfo=NY), 3) == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:30:00-05:00",
        "2024-11-05T01:30:00-05:00",
    ]
    assert ny("0 30 1 * * *", dt.datetime(2024, 11, 3, 1, 30, tzinfo=NY), 1) == [
        "2024-11-04T01:30:00-05:00"
    ]
    # every minute of a fixed hour: the hour runs once, at its first occurrence
    got = ny("*/15 1 * * *", dt.datetime(2024, 11, 3, 0, 59, tzinfo=NY), 5)
    assert got == [
        "2024-11-03T01:00:00-04:00",
        "2024-11-03T01:15:00-04:00",
        "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:45:00-04:00",
        "2024-11-04T01:00:00-05:00",
    ]
    # resuming from inside the second 01:00-02:00 does not go back to it
    second_0115 = ts(2024, 11, 3, 6, 15)  # 01:15 EST
    assert local(second_0115, NY) == "2024-11-03T01:15:00-05:00"
    assert local(parse_schedule("30 1 * * *", "America/New_York").next_after(second_0115), NY) == (
        "2024-11-04T01:30:00-05:00"
    )


def test_dst_fall_back_wildcard_hour_runs_on_real_time() -> None:
    got = fires("30 * * * *", ts(2024, 11, 3, 0, 45, tz=NY), 3, "America/New_York")
    assert [local(t, NY) for t in got] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:30:00-05:00",
        "2024-11-03T02:30:00-05:00",
    ]
    assert [b - a for a, b in itertools.pairwise(got)] == [3600, 3600]


def test_dst_sub_hourly_jobs_keep_real_time_spacing() -> None:
    spring = fires("*/30 * * * *", ts(2024, 3, 10, 1, 0, tz=NY), 3, "America/New_York")
    assert [local(t, NY) for t in spring] == [
        "2024-03-10T01:30:00-05:00",
        "2024-03-10T03:00:00-04:00",
        "2024-03-10T03:30:00-04:00",
    ]
    fall = fires("*/30 * * * *", ts(2024, 11, 3, 0, 45, tz=NY), 6, "America/New_York")
    assert [b - a for a, b in itertools.pairwise(fall)] == [1800] * 5
    assert local(fall[1], NY) == "2024-11-03T01:30:00-04:00"
    assert local(fall[3], NY) == "2024-11-03T01:30:00-05:00"
    every_10s = fires("*/10 * * * * *", ts(2024, 11, 3, 1, 59, 40, tz=NY), 4, "America/New_York")
    assert [b - a for a, b in itertools.pairwise(every_10s)] == [10] * 3


@pytest.mark.parametrize(
    ("spec", "zone", "start", "expected"),
    [
        # Europe/Paris, spring forward: 02:30 is skipped, the fixed job runs at 03:00
        ("30 2 * * *", "Europe/Paris", "2024-03-30T12:00",
         ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"]),
        ("*/30 * * * *", "Europe/Paris", "2024-03-31T01:00",
         ["2024-03-31T01:30:00+01:00", "2024-03-31T03:00:00+02:00"]),
        # Europe/Paris, fall back: 02:00-03:00 happens twice
        ("30 2 * * *", "Europe/Paris", "2024-10-26T12:00",
         ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]),
        ("30 * * * *", "Europe/Paris", "2024-10-27T01:45",
         ["2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00", "2024-10-27T03:30:00+01:00"]),
        # Australia/Sydney, fall back in April: 02:00-03:00 happens twice
        ("30 2 * * *", "Australia/Sydney", "2024-04-06T12:00",
         ["2024-04-07T02:30:00+11:00", "2024-04-08T02:30:00+10:00"]),
        ("0 30 2 * * *", "Australia/Sydney", "2024-04-06T12:00",
         ["2024-04-07T02:30:00+11:00", "2024-04-08T02:30:00+10:00"]),
        ("*/20 2 * * *", "Australia/Sydney", "2024-04-07T01:59",
         ["2024-04-07T02:00:00+11:00", "2024-04-07T02:20:00+11:00",
          "2024-04-07T02:40:00+11:00", "2024-04-08T02:00:00+10:00"]),
        ("30 * * * *", "Australia/Sydney", "2024-04-07T01:45",
         ["2024-04-07T02:30:00+11:00", "2024-04-07T02:30:00+10:00", "2024-04-07T03:30:00+10:00"]),
        # Australia/Sydney, spring forward in October: 02:00-03:00 is skipped
        ("30 2 * * *", "Australia/Sydney", "2024-10-05T12:00",
         ["2024-10-06T03:00:00+11:00", "2024-10-07T02:30:00+11:00"]),
        ("30 * * * *", "Australia/Sydney", "2024-10-06T01:00",
         ["2024-10-06T01:30:00+10:00", "2024-10-06T03:30:00+11:00"]),
        # Australia/Lord_Howe, 30-minute fall back: 01:30-02:00 happens twice
        ("45 1 * * *", "Australia/Lord_Howe", "2024-04-06T12:00",
         ["2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"]),
        ("45 * * * *", "Australia/Lord_Howe", "2024-04-07T00:50",
         ["2024-04-07T01:45:00+11:00", "2024-04-07T01:45:00+10:30", "2024-04-07T02:45:00+10:30"]),
        # Australia/Lord_Howe, 30-minute spring forward: 02:00-02:30 is skipped
        ("15 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00",
         ["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"]),
        ("45 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00",
         ["2024-10-06T02:45:00+11:00", "2024-10-07T02:45:00+11:00"]),
        ("*/15 * * * *", "Australia/Lord_Howe", "2024-10-06T01:40",
         ["2024-10-06T01:45:00+10:30", "2024-10-06T02:30:00+11:00", "2024-10-06T02:45:00+11:00"]),
    ],
)  # fmt: skip
def test_dst_in_several_zones(spec: str, zone: str, start: str, expected: list[str]) -> None:
    assert in_zone(spec, zone, start, len(expected)) == expected


def test_fixed_time_in_a_gap_fires_at_the_gap_end_even_from_just_before() -> None:
    # the slot is the transition instant itself: every `after` before it finds it
    gap_end = ts(2024, 3, 10, 7)  # 03:00 EDT
    sched = parse_schedule("30 2 * * *", "America/New_York")
    for after in (gap_end - 3600, gap_end - 2, gap_end - 1):
        assert sched.next_after(after) == gap_end
    assert local(sched.next_after(gap_end), NY) == "2024-03-11T02:30:00-04:00"


# --------------------------------------------------------------------------- #
# caching and API shape


def test_parsed_cron_schedules_are_cached_and_are_schedules() -> None:
    a = parse_schedule("*/5 * * * *", "Europe/Paris")
    assert a is parse_schedule("*/5 * * * *", "Europe/Paris")
    assert a is not parse_schedule("*/5 * * * *", "UTC")
    assert isinstance(a, CronSchedule)
    assert isinstance(a, Schedule)
    assert isinstance(parse_schedule("@every 5s", anchor=3), Schedule)
    assert a.spec == "*/5 * * * *"


# --------------------------------------------------------------------------- #
# properties

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Sao_Paulo",  # used to switch at midnight
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Africa/Casablanca",
]
BOUNDS = {"sec": (0, 59), "min": (0, 59), "hour": (0, 23), "dom": (1, 31), "mon": (1, 12)}
BOUNDS["dow"] = (0, 6)


@st.composite
def cron_field(draw: st.DrawFn, kind: str) -> tuple[str, set[int] | None]:
    """A field's text and the values it allows (None = '*'). Steps go up to
    the largest accepted (the field's range)."""
    lo, hi = BOUNDS[kind]
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return "*", None
    if choice == 1:
        step = draw(st.integers(1, hi - lo))
        return f"*/{step}", set(range(lo, hi + 1, step))
    if choice == 2:
        v = draw(st.integers(lo, hi))
        return str(v), {v}
    if choice == 3:
        a = draw(st.integers(lo, hi))
        b = draw(st.integers(a, hi))
        return f"{a}-{b}", set(range(a, b + 1))
    if choice == 4:
        a = draw(st.integers(lo, hi))
        step = draw(st.integers(1, hi - lo))
        return f"{a}/{step}", set(range(a, hi + 1, step))
    vals = draw(st.lists(st.integers(lo, hi), min_size=1, max_size=4, unique=True))
    return ",".join(map(str, vals)), set(vals)


@st.composite
def cron_spec(draw: st.DrawFn) -> tuple[str, dict[str, set[int] | None]]:
    six = draw(st.booleans())
    kinds = (["sec"] if six else []) + ["min", "hour", "dom", "mon", "dow"]
    texts, sets = [], {}
    for k in kinds:
        text, values = draw(cron_field(k))
        texts.append(text)
        sets[k] = values
    if not six:
        sets["sec"] = {0}
    return " ".join(texts), sets


Sets = dict[str, set[int] | None]


def either_day(spec: str) -> bool:
    """Cron's day rule: a day matching either field fires only when neither
    day field starts with a star."""
    fields = spec.split()
    return not fields[-3].startswith("*") and not fields[-1].startswith("*")


def wall_matches(w: dt.datetime, spec: str, sets: Sets, date_only: bool = False) -> bool:
    """Whether a wall-clock time (or only its date) matches, by the rules as stated
    (seconds are checked by the caller)."""

    def ok(kind: str, v: int) -> bool:
        s = sets[kind]
        return s is None or v in s

    dom_ok, dow_ok = ok("dom", w.day), ok("dow", (w.weekday() + 1) % 7)
    days = (dom_ok or dow_ok) if either_day(spec) else (dom_ok and dow_ok)
    if not (days and ok("mon", w.month)):
        return False
    return date_only or (ok("min", w.minute) and ok("hour", w.hour))


def slots_of_day(day: dt.date, spec: str, sets: Sets, tz: ZoneInfo) -> list[int]:
    """Every slot whose wall time falls on local ``day``, by brute force over the
    UTC minutes around it: a wall match fires, except the second occurrence of a
    repeated wall time when the hour field is fixed (not starred); a fixed-hour
    match inside a skipped stretch of wall time fires once, when the gap ends."""
    fixed = not spec.split()[-4].startswith("*")
    secs = sorted(sets["sec"] or range(60))
    midnight = int(dt.datetime.combine(day, dt.time(), tzinfo=UTC).timestamp())
    out: list[int] = []
    prev_off: int | None = None
    for m in range(midnight - 15 * 3600, midnight + 39 * 3600, 60):
        here = dt.datetime.fromtimestamp(m, tz)
        off = int(here.utcoffset().total_seconds())  # type: ignore[union-attr]
        assert off % 60 == 0
        if fixed and prev_off is not None and off > prev_off:
            for g in range(m + prev_off, m + off, 60):  # the skipped wall minutes
                wall = dt.datetime.fromtimestamp(g, UTC).replace(tzinfo=None)
                if wall.date() == day and wall_matches(wall, spec, sets) and secs:
                    out.append(m)
                    break
        prev_off = off
        if here.date() == day and wall_matches(here, spec, sets) and not (fixed and here.fold):
            out += [m + s for s in secs]
    return out


def reference_next(spec: str, sets: Sets, zone: str, after: int) -> int:
    """The first slot after ``after``, day by day: an evaluator independent of
    the module (and of croniter), slow but plain."""
    tz = ZoneInfo(zone)
    day = dt.datetime.fromtimestamp(after, tz).date() - dt.timedelta(days=1)
    for _ in range(366 * 12):
        if wall_matches(dt.datetime.combine(day, dt.time()), spec, sets, date_only=True):
            found = [t for t in slots_of_day(day, spec, sets, tz) if t > after]
            following = day + dt.timedelta(days=1)
            found += [t for t in slots_of_day(following, spec, sets, tz) if t > after]
            if found:
                return min(found)
        day += dt.timedelta(days=1)
    raise AssertionError(f"no slot of {spec!r} within 12 years")


def dst_near(t: int, tz: ZoneInfo) -> bool:
    """Whether the zone's UTC offset changes within the two days before t."""
    return bool(
        dt.datetime.fromtimestamp(t, tz).utcoffset()
        != dt.datetime.fromtimestamp(t - 2 * 86400, tz).utcoffset()
    )


def dst_instants() -> list[int]:
    out = []
    for name in ZONES[1:]:
        tz = ZoneInfo(name)
        prev = None
        for h in range(0, 24 * 366 * 3, 1):
            t = ts(2022, 1, 1) + h * 3600
            off = dt.datetime.fromtimestamp(t, tz).utcoffset()
            if prev is not None and off != prev:
                out.append(t)
            prev = off
    return out


DST_INSTANTS = dst_instants()
AFTER = st.one_of(
    st.integers(0, 4_102_444_800),  # 1970 .. 2100
    st.builds(lambda t, d: t + d, st.sampled_from(DST_INSTANTS), st.integers(-2 * 86400, 86400)),
)
PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def possible(spec: str, sets: Sets) -> bool:
    """False for specs that can never fire (day 31 only in 30-day months)."""
    dom, mon = sets["dom"], sets["mon"]
    if dom is None or mon is None or either_day(spec):
        return True
    days_in = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    return min(dom) <= max(days_in[m - 1] for m in mon)


@PROPS
@given(cron_spec(), st.sampled_from(ZONES), AFTER)
@example(
    ("30 2 * * *", {"sec": {0}, "min": {30}, "hour": {2}, "dom": None, "mon": None, "dow": None}),
    "America/New_York",
    ts(2024, 3, 10, 1, 59, tz=NY),
)
@example(
    ("30 1 * * *", {"sec": {0}, "min": {30}, "hour": {1}, "dom": None, "mon": None, "dow": None}),
    "America/New_York",
    ts(2024, 11, 3, 1, 45, tz=NY),
)
@example(
    ("0 0 */5 4,8,10 1", {"sec": {0}, "min": {0}, "hour": {0}, "dom": set(range(1, 32, 5)),
     "mon": {4, 8, 10}, "dow": {1}}),
    "UTC",
    ts(2012, 7, 9, 23, 35),
)  # fmt: skip
@example(
    ("30 1 29 2 *", {"sec": {0}, "min": {30}, "hour": {1}, "dom": {29}, "mon": {2}, "dow": None}),
    "Europe/London",
    ts(2025, 3, 1),
)
def test_cron_properties(spec_sets: tuple[str, Sets], zone: str, after: int) -> None:
    spec, sets = spec_sets
    try:
        sched = parse_schedule(spec, zone)
    except ScheduleError as exc:
        # only a spec that cannot ever fire may be refused, e.g. 30 February
        assert "never fires" in exc.message, exc.message
        assert not possible(spec, sets), spec
        return
    assert possible(spec, sets), spec
    tz = ZoneInfo(zone)
    r = sched.next_after(after)
    assert isinstance(r, int)
    assert r > after
    # the slot's wall clock matches the fields, except when a DST gap moved it
    wall = dt.datetime.fromtimestamp(r, tz)
    assert (
        wall_matches(wall, spec, sets) and wall.second in (sets["sec"] or {wall.second})
    ) or dst_near(r, tz), (spec, zone, after, local(r, tz))
    # the same answer as the brute-force evaluator, DST transitions included
    assert r == reference_next(spec, sets, zone, after), (spec, zone, after, local(r, tz))
    # nothing on the grid is skipped: any instant in [after, r) leads to r
    assert sched.next_after(r - 1) == r
    assert sched.next_after((after + r) // 2) == r


@PROPS
@given(cron_spec(), st.sampled_from(ZONES), AFTER, st.integers(0, 10**7))
def test_cron_is_monotone(spec_sets: tuple[str, Sets], zone: str, a: int, delta: int) -> None:
    spec, sets = spec_sets
    assume(possible(spec, sets))
    try:
        sched = parse_schedule(spec, zone)
    except ScheduleError:
        return
    assert sched.next_after(a) <= sched.next_after(a + delta)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 10**7),
    st.integers(-(10**10), 10**10),
    st.integers(-(10**11), 10**11),
    st.integers(0, 10**9),
)
def test_every_properties(period: int, anchor: int, after: int, delta: int) -> None:
    sched = parse_schedule(f"@every {period}s", "UTC", anchor)
    r = sched.next_after(after)
    assert r > after
    assert r > anchor
    assert (r - anchor) % period == 0  # on the grid
    assert r - period <= max(after, anchor)  # the smallest such slot
    assert sched.next_after(after + delta) >= r  # monotone


# --------------------------------------------------------------------------- #
# The L, W and # forms are searched with tables of matching days per month;
# croniter is the reference for their meaning (the module docstring).

FORM_DOM = [
    "*",
    "?",
    "L",
    "15W",
    "1W",
    "31W",
    "W30",
    "1,L",
    "10-20",
    "29",
    "31",
    "5,L",
    "*/7",
    "13",
]
FORM_DOW = ["*", "?", "1#2", "mon#5", "5#1", "1#1,1#3", "0#5", "L5", "L0", "6#4", "1-5", "0,6", "5"]
FORM_MONTH = ["*", "2", "1-6", "2,8", "*/5", "12"]
FORM_TIME = ["0 0", "30 3", "*/20 */7", "15 1-3", "0 */12"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(FORM_TIME),
    st.sampled_from(FORM_DOM),
    st.sampled_from(FORM_MONTH),
    st.sampled_from(FORM_DOW),
    st.booleans(),
    st.integers(0, 4_102_444_800),
)
def test_last_nearest_and_nth_forms_find_croniters_slots(
    time_fields: str, dom: str, month: str, dow: str, seconds: bool, after: int
) -> None:
    assume("#" in dow or "L" in dow or "L" in dom or "W" in dom)
    spec = f"{'7 ' if seconds else ''}{time_fields} {dom} {month} {dow}"
    try:
        sched = parse_schedule(spec, "UTC")
    except ScheduleError as exc:
        if "never fires" not in exc.message:
            return  # a form croniter refuses (a ? outside the day fields, W in a list)
        # croniter (the same fields, the same day rule) finds no date either
        starred = dom[0] in "*?" or dow[0] in "*?"
        both = "#" in dow or "L" in dow or "W" in dom  # these forms need both day fields
        reference = croniter(
            spec.lower(),
            dt.datetime(2000, 1, 1),
            second_at_beginning=seconds,
            day_or=not starred and not both,
        )
        with pytest.raises(CroniterBadDateError):
            reference.get_next(dt.datetime)
        return
    assert isinstance(sched, CronSchedule)
    assert sched._day_rule is not None, spec  # these forms no longer call croniter
    wall = after - after % 60 if not seconds else after
    for _ in range(3):
        found = sched._wall_from(wall)
        assert found == sched._wall_from_croniter(wall), (spec, wall)
        if found is None:
            break
        wall = found + 1
