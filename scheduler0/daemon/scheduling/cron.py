"""Next-fire maths for job schedules: pure functions, no I/O, no clock reads.

A job's schedule is a *grid* of instants (unix seconds, ``int``);
``Schedule.next_after(after)`` returns the smallest slot on that grid strictly
greater than ``after``. Callers resume a job from its last recorded slot, so a
node that comes back before the due time fires at the expected instant.

Accepted specs (``parse_schedule``)
-----------------------------------
* 5 fields, standard crontab ``min hour dom month dow`` (``*/5 * * * *``),
  interpreted in the job's IANA timezone.
* 6 fields, **seconds first**, as the original Go server (robfig/cron):
  ``sec min hour dom month dow`` (``*/10 * * * * *`` = every 10 seconds,
  ``0 30 9 * * 1-5`` = 09:30:00 on weekdays).
* Descriptors, case-insensitive: ``@yearly @annually @monthly @weekly @daily
  @midnight @hourly`` (the same instants as their 5-field crontab forms).
* ``@at <RFC 3339 time with offset>`` (``@at 2026-03-01T09:00:00+01:00``): one
  slot, at that instant (fractions of a second round up); a one-shot job.
* ``@manually``: no slot at all; the job runs only when asked (run now).
* ``@every <Go duration>`` (``1h30m10s``, ``1m``, ``90s``, ``1.5h``; units ns,
  us, µs, ms, s, m, h). It must be a whole number of seconds and at least 1s.
  The grid is ``anchor + k * period`` for ``k >= 1``: the first run is one
  period after the anchor (the job's creation), like Go's ``@every``. The
  timezone plays no part.

Field syntax is croniter's: lists, ranges, steps, month/day names, ``?``, and
also ``L``, ``W`` and ``#``. Hashed / random fields (``H``, ``R``) are refused:
a schedule must be deterministic. A spec that can never fire (``0 0 30 2 *``)
is refused at parse time. A new schedule (``validate_schedule``) must also keep
each step smaller than its field's count of values (at most ``/59`` for seconds
and minutes, ``/23`` hours, ``/30`` days of month, ``/11`` months, ``/6`` days
of week): ``*/60`` could only ever mean ``0``, so it is refused like ``60``. A
job stored before that rule keeps its meaning (``*/60`` = ``0``).

Day of month and day of week (Vixie cron, Debian cron, robfig/cron)
-------------------------------------------------------------------
When either day field starts with ``*`` or ``?`` (``*``, ``*/5``, ``?``) a day
must match *both*; only when both are restricted without a star does a day
matching *either* fire. ``0 0 */5 Apr,Aug,Oct Mon`` after 2012-07-09 fires
on Monday 2012-08-06 (croniter, which ORs whenever a field is not exactly
``*``, says Wednesday 2012-08-01); ``0 0 13 * 5`` fires on every 13th and
every Friday. The ``L``/``W``/``#`` forms (which Vixie cron does not have)
keep croniter's meaning of each field and combine by the same rule, except
that a ``#`` or ``L`` weekday, or a ``W`` day, with the other day field
restricted needs *both* (croniter's ``day_or=False``): ``0 0 15 * 5#3``
fires on a 15th that is the third Friday (2026-05-15), ``7 3 29 2 mon#5`` on
a 29 February that is a Monday (2044-02-29), ``0 0 15W * 5`` on a Friday
that is the weekday nearest the 15th, and ``0 10 15 * 1#2`` is refused as
never firing. (croniter's ``day_or=True`` keeps only the ``#``/``W`` days of
such a spec and drops the other field: every third Friday, whatever the
15th.)

An equal range means its one value however its ends are spelled (``5-5``,
``05-5``, ``feb-2``, ``sun-0``, ``7-sun``), as in standard cron; croniter
reads ``a-a`` as the whole cycle.

Daylight-saving time (``tests/test_cron.py``: New York, Paris, Sydney, Lord Howe)
-------------------------------------------------------------------------------
A spec whose hour field is starred (``*``, ``*/2``) runs on real time; any
other names fixed wall times (Debian cron's distinction).

* Spring forward (New York 2024-03-10, 02:00 EST -> 03:00 EDT): a fixed-time
  slot whose wall time does not exist that day (``30 2 * * *``) fires once at
  the end of the gap, **03:00 EDT**, however many of its slots fell in the
  gap; the next day it is back at 02:30. Starred-hour jobs skip the missing
  wall times: ``*/30 * * * *`` fires ... 01:30 EST, 03:00 EDT ...
* Fall back (New York 2024-11-03, 02:00 EDT -> 01:00 EST, 01:00-02:00 twice):
  a fixed-time job fires once, at the first occurrence: ``30 1 * * *`` at
  01:30 EDT only (a daily billing job must not run twice). Starred-hour jobs
  run in both hours: ``30 * * * *`` fires at 01:30 EDT and 01:30 EST, an hour
  apart, and ``*/10 * * * * *`` keeps its 10 s spacing.

How
---
A cron slot is found in wall-clock time (the fields' tables; for the
``L``/``W``/``#`` forms, a table of the days that match per month, with
croniter's meaning of each form) one *offset segment* at a time: the zone's
offsets through a year are found once by probing (``_year_segments``), and
within a segment wall time and UTC differ by a constant. The DST rules apply
at the segments' starts.

Performance
-----------
``next_after`` is on the fire path. Parsed schedules are cached per
``(spec, timezone)``; ``@every`` is pure integer arithmetic; cron schedules are
computed with table look-ups and integer arithmetic (no zoneinfo call once a
zone's year is known), the ``L``/``W``/``#`` forms too: their month tables are
shared by every schedule of the same day fields (croniter's own search, kept
only for a form the tables do not read, took milliseconds per search for a
rare date such as ``29 2 mon#5``). A property test checks the tables find
croniter's slots.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import threading
from bisect import bisect_right
from fractions import Fraction
from functools import lru_cache
from typing import Any, Final, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from scheduler0.daemon.state.schema import NO_NEXT_RUN
from scheduler0.models import parse_rfc3339

NEVER: Final = NO_NEXT_RUN
"""What ``next_after`` returns when a grid has no further slot (an ``@at``
past its instant, ``@manually``, a job past its ``end_at``): later than any
real instant, so it is never due; shown as no next run."""

__all__ = [
    "NEVER",
    "BoundedSchedule",
    "CronSchedule",
    "EverySchedule",
    "ManualSchedule",
    "OneShotSchedule",
    "Schedule",
    "ScheduleError",
    "is_manual",
    "parse_duration",
    "parse_schedule",
    "resume_slot",
    "validate_schedule",
    "validate_timezone",
]


class ScheduleError(ValueError):
    """A spec or timezone that cannot be scheduled.

    ``field`` is ``"spec"`` or ``"timezone"``; ``message`` is a human sentence
    without the field prefix (``str(exc)`` is ``"<field>: <message>"``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@runtime_checkable
class Schedule(Protocol):
    spec: str

    def next_after(self, after: int) -> int:
        """The smallest slot on the grid strictly greater than ``after``."""
        ...


# --------------------------------------------------------------------------- #
# timezones


_UTC_KEYS: Final = frozenset(
    {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"}
)


@lru_cache(maxsize=1024)
def _zone(timezone: str) -> ZoneInfo:
    return ZoneInfo(timezone)


def validate_timezone(timezone: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name, or ``ScheduleError(field="timezone")``."""
    if not isinstance(timezone, str) or not timezone.strip():
        raise ScheduleError("timezone", "must be an IANA timezone name such as 'UTC'")
    try:
        return _zone(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise ScheduleError("timezone", f"unknown IANA timezone {timezone!r}") from None


# --------------------------------------------------------------------------- #
# @every


_NS_PER_UNIT: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART: Final = re.compile(r"(\d*(?:\.\d*)?)(ns|us|µs|μs|ms|s|m|h)")
_MAX_NS: Final = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds


def parse_duration(text: str) -> int:
    """Parse a Go duration (``1h30m10s``, ``1.5h``, ``90s``) into whole seconds.

    Raises ``ScheduleError(field="spec")`` unless it is a whole number of
    seconds and at least one second.
    """
    s = text.strip()
    if not s:
        raise ScheduleError("spec", "@every needs a duration, e.g. '@every 1h30m'")
    body = s[1:] if s[0] in "+-" else s
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None or m.group(1) in ("", "."):
            raise ScheduleError(
                "spec",
                f"invalid duration {text.strip()!r}: expected Go syntax like "
                "'1h30m10s', '90s' or '1.5h' (units ns, us, ms, s, m, h)",
            )
        total += Fraction(m.group(1)) * _NS_PER_UNIT[m.group(2)]
        pos = m.end()
    if s[0] == "-":
        total = -total
    if total > _MAX_NS:
        raise ScheduleError("spec", f"duration {s!r} is too large")
    if total < 1_000_000_000:
        raise ScheduleError("spec", f"@every duration must be at least 1s, got {s!r}")
    seconds, rest = divmod(total, 1_000_000_000)
    if rest:
        raise ScheduleError("spec", f"@every duration must be a whole number of seconds, got {s!r}")
    return int(seconds)


class EverySchedule:
    """``@every <period>`` anchored at ``anchor``: slots ``anchor + k*period``, k >= 1.

    ``next_after(after)`` is the smallest such slot strictly greater than
    ``after``. For any ``after < anchor`` it is ``anchor + period``: the job
    fires one period after its creation (like Go's ``@every``), never at the
    anchor itself.
    """

    __slots__ = ("anchor", "period", "spec")

    def __init__(self, spec: str, period: int, anchor: int) -> None:
        self.spec = spec
        self.period = period
        self.anchor = anchor

    def next_after(self, after: int) -> int:
        anchor = self.anchor
        period = self.period
        if after < anchor:
            return anchor + period
        return anchor + ((after - anchor) // period + 1) * period

    def __repr__(self) -> str:
        return f"EverySchedule(spec={self.spec!r}, period={self.period}, anchor={self.anchor})"


# --------------------------------------------------------------------------- #
# a zone's offsets


_PROBE_SECONDS: Final = 6 * 3600
"""Offsets are probed this far apart when looking for a zone's transitions: no
zone changes its offset twice within six hours (tzdata since 1970)."""


def _offset_at(zone: ZoneInfo, t: int) -> int:
    off = _dt.datetime.fromtimestamp(t, zone).utcoffset()
    assert off is not None
    return off.days * 86400 + off.seconds


def _year_start(year: int) -> int:
    return (_dt.date(year, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86400


@lru_cache(maxsize=4096)
def _year_segments(
    zone: ZoneInfo, year: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The zone's offsets through UTC ``year``, as segments of one offset each.

    ``(starts, offsets, before)``: each segment starts at ``starts[i]`` (the
    year's start or a transition) with offset ``offsets[i]``, the offset just
    before it being ``before[i]``; the last start is the next year's, closing
    the list. zoneinfo does not list transitions, so they are found by probing
    and bisecting (once per zone and year: about a millisecond).
    """
    lo, hi = _year_start(year), _year_start(year + 1)
    starts = [lo]
    current = _offset_at(zone, lo)
    probe = lo
    while probe < hi:
        nxt = min(probe + _PROBE_SECONDS, hi)
        if _offset_at(zone, nxt) != current:
            a, b = probe, nxt  # the offset changes in (a, b]
            while b - a > 1:
                mid = (a + b) // 2
                if _offset_at(zone, mid) == current:
                    a = mid
                else:
                    b = mid
            if b < hi:  # a transition at `hi` is the next year's first start
                starts.append(b)
            current = _offset_at(zone, b)
        probe = nxt
    starts.append(hi)
    offsets = tuple(_offset_at(zone, t) for t in starts)
    before = tuple(_offset_at(zone, t - 1) for t in starts)
    return tuple(starts), offsets, before


def _civil(wall: int) -> tuple[int, int, int, int, int, int]:
    """Wall-clock seconds (a naive time counted like unix seconds) as fields."""
    days, sod = divmod(wall, 86400)
    day = _dt.date.fromordinal(days + _EPOCH_ORDINAL)
    h, rem = divmod(sod, 3600)
    mi, s = divmod(rem, 60)
    return day.year, day.month, day.day, h, mi, s


def _wall(y: int, mo: int, d: int, h: int, mi: int, s: int) -> int:
    return (_dt.date(y, mo, d).toordinal() - _EPOCH_ORDINAL) * 86400 + h * 3600 + mi * 60 + s


# --------------------------------------------------------------------------- #
# cron


_DESCRIPTORS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_NAMES_5: Final = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_NAMES_6: Final = ("second", *_FIELD_NAMES_5)
_BOUNDS_5: Final = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_BOUNDS_6: Final = ((0, 59), *_BOUNDS_5)
_MAX_STEP_5: Final = (59, 23, 30, 11, 6)
"""A step must be smaller than its field's count of values (60 minutes, 24 hours,
31 days, 12 months, 7 weekdays): a larger one can only ever give the first value."""
_MAX_STEP_6: Final = (59, *_MAX_STEP_5)
_FIELD_CHARS: Final = re.compile(r"^[0-9a-z*?,/#\-]+$")
_HASHED: Final = re.compile(r"^[hr](?:\(|/|$)")
_NUMBER: Final = re.compile(r"\d+")
_RANGE: Final = re.compile(r"^([0-9a-z]+)-([0-9a-z]+)(?:/\d+)?$")
_NAMED: Final = {
    "month": {
        m: i + 1
        for i, m in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
        )
    },
    "day of week": {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
}
"""The names croniter reads in a field, as their numbers."""

_EPOCH_ORDINAL: Final = _dt.date(1970, 1, 1).toordinal()
_DAYS_IN_MONTH: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SEARCH_YEARS: Final = 50  # croniter's default max_years_between_matches
_MAX_SEGMENTS: Final = 10 * _SEARCH_YEARS
"""Offset segments one search may cross (a year has at most five)."""
_SKIP_MARGIN: Final = 2 * 86400
"""More than any difference between two offsets of one zone (at most a day)."""


def _starred(field: str) -> bool:
    """Whether a field counts as a wildcard in cron's day and hour rules: it
    starts with ``*`` or ``?`` (``*``, ``*/5``, ``?``), as Vixie cron decides."""
    return field[:1] in ("*", "?")


def _next_table(values: list[Any] | None, lo: int, hi: int) -> tuple[int, ...]:
    """``t[x]`` = smallest allowed value >= x (or -1), for x in ``lo-?..hi+1``.

    Indexed directly by the field value; index ``hi + 1`` is always -1 so an
    overflowing counter (second 60, minute 60, hour 24, month 13) carries.
    """
    allowed = set(range(lo, hi + 1)) if values is None else {int(v) for v in values}
    table = [-1] * (hi + 2)
    nxt = -1
    for x in range(hi, -1, -1):
        if x >= lo and x in allowed:
            nxt = x
        table[x] = nxt
    return tuple(table)


def _normalize_fields(spec: str, fields: list[str], six: bool) -> list[str]:
    """Check the fields (clear messages for common mistakes) and normalize them.

    An equal range (``1-1``, ``mon-mon``, ``05-5``, ``feb-2``, ``sun-0``,
    ``7-sun``) means just its first end, as in standard cron and robfig/cron;
    croniter would read it as the whole cycle.
    """
    names = _FIELD_NAMES_6 if six else _FIELD_NAMES_5
    bounds = _BOUNDS_6 if six else _BOUNDS_5
    out: list[str] = []
    for name, (lo, hi), raw in zip(names, bounds, fields, strict=True):
        field = raw.lower()
        if not _FIELD_CHARS.match(field):
            raise ScheduleError("spec", f"invalid {name} field {raw!r} in {spec!r}")
        parts = field.split(",")
        for i, part in enumerate(parts):
            if _equal_range(name, part):
                parts[i] = part.partition("-")[0]
        out.append(",".join(parts))
        for part in parts:
            if _HASHED.match(part):
                raise ScheduleError(
                    "spec", f"hashed/random values ({raw!r}) are not supported in {spec!r}"
                )
            if "#" in part or "w" in part or part.startswith("l"):
                continue  # croniter's nth-weekday / nearest-weekday / last forms
            range_part, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ScheduleError("spec", f"invalid step in {name} field {raw!r} of {spec!r}")
            for num in _NUMBER.findall(range_part):
                if not lo <= int(num) <= hi:
                    raise ScheduleError(
                        "spec",
                        f"{name} value {num} out of range {lo}-{hi} in {spec!r}",
                    )
    return out


def _either_form(dom: str, dow: str) -> bool:
    """Whether the day fields use a form whose day must also match the other
    day field when both are restricted: ``n#k`` or ``nL`` (``L5``) in the day
    of week, ``nW`` in the day of month (no weekday name has an l, and the day
    of month has no names)."""
    return "#" in dow or "l" in dow or "w" in dom


def _equal_range(name: str, part: str) -> bool:
    """Whether ``part`` is a range whose two ends are one value (a step or not):
    the same number or name, or a Sunday written ``7-0``."""
    m = _RANGE.match(part)
    if m is None:
        return False
    names = _NAMED.get(name, {})
    a, b = (int(e) if e.isdigit() else names.get(e) for e in m.groups())
    if a is None or b is None:
        return False
    return a == b or (name == "day of week" and (a, b) == (7, 0))


def _check_steps(spec: str) -> None:
    """Refuse a step larger than its field's range (``*/60`` in minutes): a rule
    for new schedules only, so a job stored before it keeps its meaning."""
    fields = spec.split()
    if len(fields) not in (5, 6):
        return  # a descriptor
    six = len(fields) == 6
    names = _FIELD_NAMES_6 if six else _FIELD_NAMES_5
    max_steps = _MAX_STEP_6 if six else _MAX_STEP_5
    for name, max_step, field in zip(names, max_steps, fields, strict=True):
        for part in field.split(","):
            step = part.partition("/")[2]
            if step.isdigit() and int(step) > max_step:
                raise ScheduleError(
                    "spec",
                    f"{name} step /{int(step)} is larger than the field's range in {spec!r}"
                    f" (at most /{max_step})",
                )


def _days_in(y: int, mo: int) -> int:
    if mo == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[mo]


def _nearest_weekday(y: int, mo: int, day: int, dim: int, wd1: int) -> int:
    """croniter's ``nW``: ``day`` (at most the month's last) if a weekday, else
    the Friday before or the Monday after, staying in the month. ``wd1`` is
    the cron weekday (0 = Sunday) of the 1st."""
    day = min(day, dim)
    wd = (wd1 + day - 1) % 7
    if 1 <= wd <= 5:
        return day
    if wd == 6:  # Saturday
        return day - 1 if day > 1 else day + 2
    return day + 1 if day < dim else day - 2  # Sunday


class _DayRule:
    """Which days of a month match the day fields of a spec with croniter's
    ``L`` (last day of the month), ``nW`` (nearest weekday) or ``n#k`` / ``nL``
    (k-th / last weekday n) forms, with croniter's meaning of each field and
    of their combination (the module's docstring): a spec whose day fields
    are both restricted (``or_days``; never with a ``#``, ``nL`` or ``W``
    form) matches a day that satisfies either; otherwise both fields must
    match.

    ``month(y, mo)`` is a table indexed by day (1..31). Rules are equal when
    their day fields are, and the tables of equal rules are computed once
    (``_rule_month``): 10,000 jobs of one day rule in as many zones and
    times of day share them."""

    __slots__ = ("_dom", "_dom_last", "_dow", "_either", "_key", "_nth", "_w")

    def __init__(
        self,
        dom: frozenset[int] | None,
        dom_last: bool,
        dow: frozenset[int] | None,
        nth: dict[int, frozenset[int]],
        w: frozenset[int],
        either: bool,
        months: frozenset[int],
    ) -> None:
        self._dom = dom  # None: any day of the month (the field is *)
        self._dom_last = dom_last
        self._dow = dow  # None: any day of the week
        self._nth = nth  # cron weekday -> {k (1..5) or 0 for the last}
        self._w = w
        self._either = either
        self._key = (dom, dom_last, dow, tuple(sorted(nth.items())), w, either, months)

    @classmethod
    def of(cls, cron: croniter, or_days: bool) -> _DayRule | None:
        """The rule of a parsed croniter; None for a form not read here."""
        expanded: list[list[Any]] = cron.expanded
        dom_field, dow_field = expanded[2], expanded[4]
        dom: set[int] = set()
        dom_last = False
        for v in dom_field:
            if v == "l":
                dom_last = True
            elif isinstance(v, int):
                dom.add(v)
            elif v != "*":
                return None
        dow: set[int] = set()
        for v in dow_field:
            if not isinstance(v, int) and v != "*":
                return None
            if isinstance(v, int):
                dow.add(v % 7)
        nth: dict[int, frozenset[int]] = {}
        for key, ks in cron.nth_weekday_of_month.items():
            days = range(7) if key == "*" else (int(key) % 7,)
            wanted = frozenset(0 if k == "l" else int(k) for k in ks)
            for wd in days:
                nth[wd] = nth.get(wd, frozenset()) | wanted
        w = frozenset(int(v) for v in cron.nearest_weekday)
        either = dom_field[0] != "*" and dow_field[0] != "*" and or_days
        month_field = expanded[3]
        months = frozenset(range(1, 13) if month_field[0] == "*" else map(int, month_field))
        return cls(
            None if dom_field[0] == "*" else frozenset(dom),
            dom_last,
            None if dow_field[0] == "*" else frozenset(dow),
            nth,
            w,
            either,
            months,
        )

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _DayRule) and self._key == other._key

    def month(self, y: int, mo: int) -> tuple[bool, ...]:
        return _rule_month(self, y, mo)

    def table(self, y: int, mo: int) -> tuple[bool, ...]:
        """The month's table."""
        dim = _days_in(y, mo)
        wd1 = (_dt.date(y, mo, 1).weekday() + 1) % 7  # cron weekday of the 1st
        # day of month: the W days replace the field's days (as croniter's search does)
        if self._w:
            dom_days: set[int] | None = {_nearest_weekday(y, mo, day, dim, wd1) for day in self._w}
        elif self._dom is None:
            dom_days = None
        else:
            dom_days = {d for d in self._dom if d <= dim}
            if self._dom_last:
                dom_days.add(dim)
        # day of week: the # / L days replace the field's weekdays
        nth_days: set[int] | None = None
        if self._nth:
            nth_days = set()
            for wd, ks in self._nth.items():
                first = 1 + (wd - wd1) % 7
                dates = list(range(first, dim + 1, 7))
                for k in ks:
                    if k == 0:
                        nth_days.add(dates[-1])
                    elif k <= len(dates):
                        nth_days.add(dates[k - 1])
        out = [False] * 32
        for d in range(1, dim + 1):
            wd = (wd1 + d - 1) % 7
            # a # / L weekday form replaces the field's weekdays
            dow_ok = (
                (d in nth_days) if nth_days is not None else (self._dow is None or wd in self._dow)
            )
            dom_ok = dom_days is None or d in dom_days
            out[d] = (dom_ok or dow_ok) if self._either else (dom_ok and dow_ok)
        return tuple(out)


@lru_cache(maxsize=8192)
def _rule_month(rule: _DayRule, y: int, mo: int) -> tuple[bool, ...]:
    return rule.table(y, mo)


class _CronFields:
    """What a cron spec's fields mean, whatever the zone: croniter's parse,
    the day rules and the look-up tables (``_cron_fields`` keeps one per spec)."""

    def __init__(self, spec: str) -> None:
        text = spec.strip()
        desc = _DESCRIPTORS.get(text.lower())
        if desc is not None:
            text = desc
        elif text.startswith("@"):
            raise ScheduleError(
                "spec",
                f"unknown descriptor {text.split()[0]!r}; expected one of "
                + ", ".join(sorted(_DESCRIPTORS))
                + " or '@every <duration>'",
            )
        fields = text.split()
        if len(fields) not in (5, 6):
            raise ScheduleError(
                "spec",
                f"expected 5 fields (crontab) or 6 (seconds first), got {len(fields)}",
            )
        six = len(fields) == 6
        self._seconds = six
        fields = _normalize_fields(spec, fields, six)
        hour, dom, dow = fields[-4], fields[-3], fields[-1]
        # Vixie cron's rules: both day fields must match when either is starred,
        # either may match when both are restricted; an hour field that is not
        # starred names fixed wall times (which the DST rules treat apart).
        self._or_days = not _starred(dom) and not _starred(dow) and not _either_form(dom, dow)
        self._fixed_hour = not _starred(hour)
        try:
            c = croniter(
                " ".join(fields),
                _dt.datetime(2000, 1, 1),
                second_at_beginning=six,
                day_or=self._or_days,
            )
        except CroniterError as exc:
            raise ScheduleError("spec", f"invalid cron spec {spec!r}: {exc}") from None
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ScheduleError("spec", f"invalid cron spec {spec!r}: {exc}") from None
        self._lock = threading.Lock()

        expanded: list[list[Any]] = c.expanded
        flat = [v for f in expanded for v in f if v != "*"]
        self._fast = (
            not c.nth_weekday_of_month
            and not c.nearest_weekday
            and all(isinstance(v, int) for v in flat)
        )

        def values(index: int) -> list[Any] | None:
            f = expanded[index]
            return None if f == ["*"] else f

        self._nsec = _next_table(values(5), 0, 59) if six else _next_table([0], 0, 59)
        self._nmin = _next_table(values(0), 0, 59)
        self._nhour = _next_table(values(1), 0, 23)
        self._nmon = _next_table(values(3), 1, 12)
        dom_set, dow_set = set(), set()
        if self._fast:
            dom_values, dow_values = values(2), values(4)
            dom_set = set(range(1, 32)) if dom_values is None else {int(v) for v in dom_values}
            dow_set = set(range(7)) if dow_values is None else {int(v) % 7 for v in dow_values}
        self._dom_ok = tuple(d in dom_set for d in range(32))
        self._dow_ok = tuple(d in dow_set for d in range(7))
        every_dom, every_dow = len(dom_set) == 31, len(dow_set) == 7
        self._days_all = (every_dom or every_dow) if self._or_days else (every_dom and every_dow)
        # The L, W and # forms: which days of a month match, one month at a time
        # (None: a form this module does not read itself; croniter then searches).
        self._day_rule = None if self._fast else _DayRule.of(c, self._or_days)
        if self._day_rule is not None:
            self._days_all = False
        self._cron_args = (" ".join(fields), six, self._or_days)
        self._croniter: croniter | None = None if self._fast or self._day_rule else c
        """Kept only for a form the tables do not read: croniter's parse holds
        a dozen lists per spec, which every full garbage collection walks."""

    def reference(self) -> croniter:
        """croniter for these fields: the search of a form the tables do not
        read, and the reference the tables are tested against."""
        if self._croniter is None:
            text, six, or_days = self._cron_args
            self._croniter = croniter(
                text, _dt.datetime(2000, 1, 1), second_at_beginning=six, day_or=or_days
            )
        return self._croniter


@lru_cache(maxsize=8192)
def _cron_fields(spec: str) -> _CronFields:
    return _CronFields(spec)


class CronSchedule:
    """A crontab-style schedule in an IANA timezone (see the module docstring)."""

    __slots__ = (
        "_day_rule",
        "_days_all",
        "_dom_ok",
        "_dow_ok",
        "_fast",
        "_fields",
        "_fixed_hour",
        "_nhour",
        "_nmin",
        "_nmon",
        "_nsec",
        "_or_days",
        "_seconds",
        "_segments",
        "_utc",
        "_zone",
        "spec",
        "timezone",
    )

    def __init__(self, spec: str, timezone: str) -> None:
        self.spec = spec
        self.timezone = timezone
        self._zone = validate_timezone(timezone)
        self._utc = timezone in _UTC_KEYS
        self._segments: tuple[int, int, tuple[int, ...], tuple[int, ...], tuple[int, ...]] = (
            0,
            0,
            (),
            (),
            (),
        )

        fields = _cron_fields(spec)  # the same for every zone: parsed once
        self._seconds = fields._seconds
        self._or_days = fields._or_days
        self._fixed_hour = fields._fixed_hour
        self._fields = fields
        self._fast = fields._fast
        self._nsec = fields._nsec
        self._nmin = fields._nmin
        self._nhour = fields._nhour
        self._nmon = fields._nmon
        self._dom_ok = fields._dom_ok
        self._dow_ok = fields._dow_ok
        self._days_all = fields._days_all
        self._day_rule = fields._day_rule

        # A spec that can never fire (31 February) is refused here, not at run time.
        try:
            self.next_after(946684800)  # 2000-01-01T00:00:00Z
        except ScheduleError:
            raise ScheduleError("spec", f"{spec!r} never fires (no matching date)") from None

    def __repr__(self) -> str:
        return f"CronSchedule(spec={self.spec!r}, timezone={self.timezone!r})"

    # -- the fire path ------------------------------------------------------ #

    def next_after(self, after: int) -> int:
        """The smallest slot > ``after`` (the rules of the module docstring).

        Raises ``ScheduleError(field="spec")`` if no slot exists within 50 years.
        """
        after = int(after)
        try:
            found = self._wall_from(after + 1) if self._utc else self._zoned_from(after + 1)
        except (ValueError, OverflowError, OSError):  # past the calendar (year 9999)
            found = None
        if found is None:
            raise ScheduleError("spec", f"{self.spec!r} has no slot after {after}")
        return found

    def _zoned_from(self, t: int) -> int | None:
        """The first slot >= ``t`` in a zone: wall-clock matches, one offset
        segment at a time, with the DST rules applied at the segments' starts."""
        fixed = self._fixed_hour
        first = t
        known = (0, -1)  # (a, b): no wall time in [a, b) matches, and b does

        def wall_from(wall: int) -> int | None:
            nonlocal known
            if known[0] <= wall <= known[1]:
                return known[1]
            found = self._wall_from(wall)
            if found is not None:
                known = (wall, found)
            return found

        for _ in range(_MAX_SEGMENTS):
            start, end, off, before = self._segment(t)
            if fixed and t == start and off > before:
                # Clocks went forward at `start`: the wall times [start + before,
                # start + off) never happen. A fixed-time slot among them fires
                # once, when the gap ends.
                skipped = wall_from(start + before)
                if skipped is not None and skipped < start + off:
                    return start
            wall = wall_from(t + off)
            if wall is None:
                return None
            slot = wall - off
            if slot >= end:
                # Nothing before `wall` matches. Once past the transitions
                # whose repeated hour could go back before `first`, every wall
                # time until two days before `wall` (offsets differ by less)
                # is one that does not: skip there instead of segment by segment.
                far = slot - _SKIP_MARGIN
                t = far if end >= first + _SKIP_MARGIN and far > end else end
                continue
            if fixed and off < before and wall < start + before:
                # Clocks went back at `start`: this wall time already happened
                # (before - off) seconds earlier, and a fixed-time job ran then.
                t = start + before - off
                continue
            return slot
        return None

    def _segment(self, t: int) -> tuple[int, int, int, int]:
        """``(start, end, offset, offset before start)`` of the zone's segment holding ``t``."""
        lo, hi, starts, offsets, before = self._segments
        if not lo <= t < hi:
            year = _dt.datetime.fromtimestamp(t, _dt.UTC).year
            starts, offsets, before = _year_segments(self._zone, year)
            self._segments = (starts[0], starts[-1], starts, offsets, before)
        i = bisect_right(starts, t) - 1
        return starts[i], starts[i + 1], offsets[i], before[i]

    def _wall_from(self, wall: int) -> int | None:
        """The first wall-clock time >= ``wall`` (naive seconds) matching every
        field, or None within the search horizon."""
        if not self._fast and self._day_rule is None:
            return self._wall_from_croniter(wall)
        days, sod = divmod(wall, 86400)
        day = _dt.date.fromordinal(days + _EPOCH_ORDINAL)
        h, rem = divmod(sod, 3600)
        mi, s = divmod(rem, 60)
        if not self._seconds and s:
            mi += 1
            s = 0
        found = self._next_wall(day.year, day.month, day.day, h, mi, s)
        if found is None:
            return None
        y, mo, d, h, mi, s = found
        if d != day.day or mo != day.month or y != day.year:
            days = _dt.date(y, mo, d).toordinal() - _EPOCH_ORDINAL
        return days * 86400 + h * 3600 + mi * 60 + s

    def _next_wall(
        self, y: int, mo: int, d: int, h: int, mi: int, s: int
    ) -> tuple[int, int, int, int, int, int] | None:
        """The first wall-clock time >= the given one matching every field.

        Counters may overflow by one (s=60, mi=60, h=24, mo=13); the tables
        carry them. ``None`` if nothing matches within the search horizon.
        """
        nmon, nhour, nmin, nsec = self._nmon, self._nhour, self._nmin, self._nsec
        dom_ok, dow_ok = self._dom_ok, self._dow_ok
        days_all, or_days = self._days_all, self._or_days
        rule = self._day_rule
        limit = y + _SEARCH_YEARS
        while y <= limit:
            m2 = nmon[mo]
            if m2 < 0:
                y += 1
                mo, d, h, mi, s = 1, 1, 0, 0, 0
                continue
            if m2 != mo:
                mo, d, h, mi, s = m2, 1, 0, 0, 0
            dim = _DAYS_IN_MONTH[mo]
            if mo == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
                dim = 29
            if d > dim:
                mo += 1
                d, h, mi, s = 1, 0, 0, 0
                continue
            if rule is not None:
                mask = rule.month(y, mo)
                d2 = d
                while d2 <= dim and not mask[d2]:
                    d2 += 1
                if d2 > dim:
                    mo += 1
                    d, h, mi, s = 1, 0, 0, 0
                    continue
                if d2 != d:
                    d, h, mi, s = d2, 0, 0, 0
            elif not days_all:
                wd = (_dt.date(y, mo, d).weekday() + 1) % 7  # cron: 0 = Sunday
                d2 = d
                while d2 <= dim:
                    if or_days:
                        if dom_ok[d2] or dow_ok[wd]:
                            break
                    elif dom_ok[d2] and dow_ok[wd]:
                        break
                    d2 += 1
                    wd = (wd + 1) % 7
                if d2 > dim:
                    mo += 1
                    d, h, mi, s = 1, 0, 0, 0
                    continue
                if d2 != d:
                    d, h, mi, s = d2, 0, 0, 0
            h2 = nhour[h]
            if h2 < 0:
                d += 1
                h, mi, s = 0, 0, 0
                continue
            if h2 != h:
                h, mi, s = h2, 0, 0
            m3 = nmin[mi]
            if m3 < 0:
                h += 1
                mi, s = 0, 0
                continue
            if m3 != mi:
                mi, s = m3, 0
            s2 = nsec[s]
            if s2 < 0:
                mi += 1
                s = 0
                continue
            return y, mo, d, h, mi, s2
        return None

    def _wall_from_croniter(self, wall: int) -> int | None:
        """``_wall_from`` for the L, W and # forms: croniter on naive times,
        where it does wall-clock arithmetic only."""
        start = _dt.datetime(*_civil(wall - 1))
        try:
            with self._fields._lock:  # croniter objects are stateful
                found: _dt.datetime = self._fields.reference().get_next(
                    _dt.datetime, start_time=start, update_current=False
                )
        except CroniterBadDateError:
            return None
        return _wall(found.year, found.month, found.day, found.hour, found.minute, found.second)


# --------------------------------------------------------------------------- #
# entry point


@lru_cache(maxsize=8192)
def _cron_schedule(spec: str, timezone: str) -> CronSchedule:
    return CronSchedule(spec, timezone)


@lru_cache(maxsize=4096)
def _every_period(rest: str) -> int:
    return parse_duration(rest)


class OneShotSchedule:
    """``@at <time>``: the one slot ``at``, then none (``NEVER``)."""

    __slots__ = ("at", "spec")

    def __init__(self, spec: str, at: int) -> None:
        self.spec = spec
        self.at = at

    def next_after(self, after: int) -> int:
        return self.at if after < self.at else NEVER

    def __repr__(self) -> str:
        return f"OneShotSchedule(spec={self.spec!r}, at={self.at})"


class ManualSchedule:
    """``@manually``: no slot; the job runs only by run-now."""

    __slots__ = ("spec",)

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def next_after(self, after: int) -> int:
        return NEVER

    def __repr__(self) -> str:
        return f"ManualSchedule(spec={self.spec!r})"


class BoundedSchedule:
    """A grid limited to ``[start, end]`` (a job's ``start_at``/``end_at``):
    no slot before ``start``, and ``NEVER`` once the next slot would be after
    ``end``. Either bound may be None (open)."""

    __slots__ = ("end", "inner", "spec", "start")

    def __init__(self, inner: Schedule, start: float | None, end: float | None) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.start = None if start is None else math.ceil(start)
        """The first second a slot may fall on."""
        self.end = None if end is None else math.floor(end)
        """The last second a slot may fall on."""

    def next_after(self, after: int) -> int:
        start = self.start
        if start is not None and after < start:
            after = start - 1
        slot = self.inner.next_after(after)
        end = self.end
        return NEVER if end is not None and slot > end else slot

    def __repr__(self) -> str:
        return f"BoundedSchedule({self.inner!r}, start={self.start}, end={self.end})"


def is_manual(spec: str) -> bool:
    """``@manually``: a job that has no next run yet is not completed."""
    return spec.strip().lower() == "@manually"


@lru_cache(maxsize=4096)
def _at_slot(rest: str) -> int:
    """The slot of ``@at <time>``: the instant, rounded up to a whole second."""
    if not rest:
        raise ScheduleError("spec", "@at needs a time, e.g. '@at 2026-03-01T09:00:00Z'")
    try:
        return math.ceil(parse_rfc3339(rest))
    except ValueError as exc:
        raise ScheduleError("spec", f"@at time {rest[:64]!r} {exc}") from None


def resume_slot(
    schedule: Schedule, not_before: int, last_fired: int | None, runs_left: int | None = None
) -> int:
    """A job's next slot from its stored state: the first on its grid after
    both its start (``not_before``) and its last fired slot; ``NEVER`` once
    ``runs_left`` (a job's ``max_runs`` less its fired runs; None: no limit)
    is down to 0. What a job's kept next run is, and what it is computed as
    where it is not kept."""
    if runs_left is not None and runs_left <= 0:
        return NEVER
    return schedule.next_after(max(not_before, last_fired or not_before))


def validate_schedule(spec: str, timezone: str) -> Schedule:
    """``parse_schedule`` for a new or changed schedule: it also applies the
    rules that only new input must meet (a step larger than its field's range
    is refused). Jobs already stored are loaded with ``parse_schedule``.
    Raises ``ScheduleError`` whose ``field`` is ``"spec"`` or ``"timezone"``.
    """
    schedule = parse_schedule(spec, timezone, 0)
    if isinstance(schedule, CronSchedule):
        _check_steps(spec)
    return schedule


def parse_schedule(spec: str, timezone: str = "UTC", anchor: int = 0) -> Schedule:
    """Parse ``spec`` into a ``Schedule`` (see the module docstring for the syntax).

    ``anchor`` (unix seconds, normally the job's creation time) only matters
    for ``@every``. The timezone is validated for every kind of spec.
    Raises ``ScheduleError`` whose ``field`` is ``"spec"`` or ``"timezone"``.
    """
    if not isinstance(spec, str):
        raise ScheduleError("spec", "must be a string")
    validate_timezone(timezone)
    text = spec.strip()
    if not text:
        raise ScheduleError("spec", "must not be empty")
    head, *rest = text.split(None, 1)
    keyword = head.lower()
    if keyword == "@every":
        return EverySchedule(spec, _every_period(rest[0] if rest else ""), int(anchor))
    if keyword == "@at":
        return OneShotSchedule(spec, _at_slot(rest[0].strip() if rest else ""))
    if keyword == "@manually":
        if rest:
            raise ScheduleError("spec", "@manually takes nothing after it")
        return ManualSchedule(spec)
    return _cron_schedule(spec, timezone)
