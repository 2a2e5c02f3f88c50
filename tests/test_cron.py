"""Next-fire maths: scheduler0.daemon.scheduling.cron."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from scheduler0.daemon.scheduling.cron import (
    CronSchedule,
    EverySchedule,
    Schedule,
    ScheduleError,
    parse_duration,
    parse_schedule,
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
        # dom and dow both restricted: either matches (Vixie cron / croniter)
        ("0 0 13 * 5", T0, [ts(2024, 1, 5), ts(2024, 1, 12), ts(2024, 1, 13), ts(2024, 1, 19)]),
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
    ],
)
def test_cron_examples_utc(spec: str, after: int, expected: list[int]) -> None:
    assert fires(spec, after, len(expected)) == expected


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
# DST, America/New_York (2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST)


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


def test_dst_fall_back_daily_0230_fires_once() -> None:
    assert ny("30 2 * * *", dt.datetime(2024, 11, 2, 12, tzinfo=NY), 3) == [
        "2024-11-03T02:30:00-05:00",
        "2024-11-04T02:30:00-05:00",
        "2024-11-05T02:30:00-05:00",
    ]


def test_dst_fall_back_daily_0130_fires_twice() -> None:
    got = fires("30 1 * * *", ts(2024, 11, 2, 12, tz=NY), 3, "America/New_York")
    assert [local(t, NY) for t in got] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:30:00-05:00",
        "2024-11-04T01:30:00-05:00",
    ]
    assert got[1] - got[0] == 3600


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
    """A field's text and the values it allows (None = '*')."""
    lo, hi = BOUNDS[kind]
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return "*", None
    if choice == 1:
        step = draw(st.integers(1, hi - lo + 1))
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
        step = draw(st.integers(1, hi - lo + 1))
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


def matches(t: int, tz: ZoneInfo, spec: str, sets: dict[str, set[int] | None]) -> bool:
    d = dt.datetime.fromtimestamp(t, tz)

    def ok(kind: str, v: int) -> bool:
        s = sets[kind]
        return s is None or v in s

    # croniter: day-of-month and day-of-week are OR-ed when both are restricted;
    # a field listing every value counts as '*' when the other field contains '*'
    dom_text, dow_text = spec.split()[-3], spec.split()[-1]
    dom, dow = sets["dom"], sets["dow"]
    dom_star = dom is None or (len(dom) == 31 and "*" in dow_text)
    dow_star = dow is None or (len(dow) == 7 and "*" in dom_text)
    dom_ok, dow_ok = ok("dom", d.day), ok("dow", (d.weekday() + 1) % 7)
    days = (dom_ok or dow_ok) if not dom_star and not dow_star else (dom_ok and dow_ok)
    return (
        ok("sec", d.second)
        and ok("min", d.minute)
        and ok("hour", d.hour)
        and ok("mon", d.month)
        and days
    )


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


def possible(sets: dict[str, set[int] | None]) -> bool:
    """False for specs that can never fire (day 31 only in 30-day months)."""
    dom, mon = sets["dom"], sets["mon"]
    if dom is None or mon is None or sets["dow"] is not None:
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
def test_cron_properties(
    spec_sets: tuple[str, dict[str, set[int] | None]], zone: str, after: int
) -> None:
    spec, sets = spec_sets
    try:
        sched = parse_schedule(spec, zone)
    except ScheduleError as exc:
        # only a spec that cannot ever fire may be refused, e.g. 30 February
        assert "never fires" in exc.message, exc.message
        assert not possible(sets), spec
        return
    assert possible(sets), spec
    tz = ZoneInfo(zone)
    r = sched.next_after(after)
    assert isinstance(r, int)
    assert r > after
    # the slot's wall clock matches the fields, except when a DST gap moved it
    assert matches(r, tz, spec, sets) or dst_near(r, tz), (spec, zone, after, local(r, tz))
    # the same answer as croniter itself, DST transitions included
    six = len(spec.split()) == 6
    # (an equal range "a-a" means "a"; croniter alone would read the whole cycle)
    plain = re.sub(r"\b(\d+)-\1\b(/\d+)?", r"\1", spec)
    oracle = croniter(plain, dt.datetime.fromtimestamp(after, tz), second_at_beginning=six)
    assert r == int(oracle.get_next(float))
    # nothing on the grid is skipped: any instant in [after, r) leads to r
    assert sched.next_after(r - 1) == r
    assert sched.next_after((after + r) // 2) == r


@PROPS
@given(cron_spec(), st.sampled_from(ZONES), AFTER, st.integers(0, 10**7))
def test_cron_is_monotone(
    spec_sets: tuple[str, dict[str, set[int] | None]], zone: str, a: int, delta: int
) -> None:
    spec, sets = spec_sets
    assume(possible(sets))
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
