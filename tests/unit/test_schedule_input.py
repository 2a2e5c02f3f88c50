"""The preview's input model checks a schedule exactly as a job's fields are checked."""

from __future__ import annotations

import pytest

from scheduler0.models import JobIn, ScheduleIn


@pytest.mark.parametrize("name", ["spec", "timezone"])
def test_schedule_in_checks_its_fields_as_job_in_does(name: str) -> None:
    ours, jobs = ScheduleIn.model_fields[name], JobIn.model_fields[name]
    assert (ours.annotation, ours.default, ours.metadata) == (
        jobs.annotation,
        jobs.default,
        jobs.metadata,
    )
    assert ours.metadata  # the bounds are there to compare
