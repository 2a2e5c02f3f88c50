"""Schedule preview: the next runs of a spec in a timezone, before any job has it.

``GET /schedules/preview`` answers exactly what creating a job with that spec
and timezone would: its runs, or the same 422 (same field, same message),
since both check with ``jobs.check_schedule``.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from scheduler0.daemon.api.http import (
    Param,
    int_param,
    off_loop,
    ok,
    text_param,
    time_param,
)
from scheduler0.daemon.api.jobs import check_schedule
from scheduler0.daemon.scheduling.cron import ScheduleError, parse_schedule, validate_timezone
from scheduler0.daemon.timefmt import iso
from scheduler0.errors import FieldError, ValidationFailed
from scheduler0.models import ScheduleIn, invalid, parse_one

LAST_INSTANT = 253_402_300_799
"""9999-12-31T23:59:59Z: the last instant a run can be shown at."""

SPEC = Param(
    "spec",
    "Required: the cron spec, descriptor, '@every <duration>', '@at <RFC 3339>' or"
    " '@manually' a job would have.",
    type="string",
)
TIMEZONE = Param("timezone", "The job's IANA timezone.", type="string", default="UTC")
COUNT = Param("count", "How many runs.", default=5, minimum=1, maximum=100)
AFTER = Param(
    "after",
    "The runs after this instant: unix seconds or RFC 3339 (UTC without an offset);"
    " default now. An @every grid is anchored here, as a job created then would be.",
    type="number|string",
)


def _after(request: Request) -> int:
    """``after`` in whole unix seconds (now when absent), within the calendar."""
    value = time_param(request, AFTER)
    if value is None:
        return int(time.time())
    if not 0 <= value <= LAST_INSTANT:
        message = "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        raise ValidationFailed(f"after: {message}", [FieldError("after", message)])
    return math.floor(value)


def _runs(spec: str, timezone: str, after: int, count: int) -> list[dict[str, Any]]:
    """Up to ``count`` runs after ``after``: fewer when the schedule has none
    left before the end of the calendar."""
    schedule = parse_schedule(spec, timezone, after)
    zone = validate_timezone(timezone)
    out: list[dict[str, Any]] = []
    slot = after
    while len(out) < count:
        try:
            slot = schedule.next_after(slot)
        except ScheduleError:
            break
        if slot > LAST_INSTANT:
            break
        local = datetime.fromtimestamp(slot, zone).isoformat()
        out.append({"at": iso(slot), "local": local, "unix": slot})
    return out


def _schedule_in(spec: str | None, timezone: str) -> ScheduleIn:
    """The parameters checked as a job's ``spec`` and ``timezone`` are. Without
    a spec, the timezone's own problem is named too (first, as a job's check
    names it before the spec's)."""
    given = {"timezone": timezone} if spec is None else {"spec": spec, "timezone": timezone}
    try:
        return parse_one(ScheduleIn, given)
    except ValidationFailed as exc:
        if spec is not None or any(d.field == "timezone" for d in exc.details):
            raise
        try:
            validate_timezone(timezone)
        except ScheduleError as bad:
            raise invalid([FieldError(bad.field, bad.message), *exc.details]) from None
        raise


async def preview(request: Request) -> Response:
    count = int_param(request, COUNT)
    assert count is not None
    after = _after(request)
    timezone = text_param(request, TIMEZONE)
    assert timezone is not None  # it has a default
    schedule = _schedule_in(text_param(request, SPEC), timezone)
    problem = await off_loop(check_schedule, schedule.spec, schedule.timezone)
    if problem is not None:
        raise invalid([problem])
    runs = await off_loop(_runs, schedule.spec, schedule.timezone, after, count)
    return ok(
        {"spec": schedule.spec, "timezone": schedule.timezone, "after": iso(after), "runs": runs}
    )
