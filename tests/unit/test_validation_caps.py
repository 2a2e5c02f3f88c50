"""A hostile body costs the node little: unknown keys are one error per object,
and a 422 lists at most MAX_FIELD_ERRORS details plus a count of the rest."""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson
import pytest

from scheduler0.daemon.api.jobs import JobChecks, validate_jobs
from scheduler0.daemon.executor.destinations import DestinationPolicy
from scheduler0.errors import ValidationFailed
from scheduler0.models import MAX_FIELD_ERRORS, JobIn, parse_one

pytestmark = pytest.mark.unit


class Projects:
    def existing_project_ids(self, ids: Sequence[int]) -> set[int]:
        return {1}


CHECKS = JobChecks(DestinationPolicy(), 64 * 1024)


def job(**extra: object) -> dict[str, object]:
    return {"project_id": 1, "spec": "@every 1s", "callback_url": "http://127.0.0.1:1/cb", **extra}


def test_many_unknown_keys_are_one_error_naming_a_few() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_one(JobIn, job(**{f"k{i:03d}": i for i in range(900)}))
    [error] = caught.value.details
    assert error.field == "k000"
    assert "899 more unknown fields" in error.message
    few = pytest.raises(ValidationFailed)
    with few as caught_few:
        parse_one(JobIn, job(color="red", size=1))
    assert [(d.field, d.message) for d in caught_few.value.details] == [
        ("color", "unknown field"),
        ("size", "unknown field"),
    ]


def test_a_huge_invalid_batch_answers_a_small_error_quickly() -> None:
    items = [job(**{f"k{i:03d}": i for i in range(900)}) for _ in range(2000)]
    started = time.perf_counter()
    with pytest.raises(ValidationFailed) as caught:
        validate_jobs(items, Projects(), CHECKS)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    answer = orjson.dumps(caught.value.to_dict())
    assert len(caught.value.details) == MAX_FIELD_ERRORS
    assert caught.value.omitted == 2000 - MAX_FIELD_ERRORS
    assert [d.index for d in caught.value.details] == list(range(MAX_FIELD_ERRORS))
    assert len(answer) < 50_000, len(answer)
    assert "and 1999 more" in caught.value.message
    assert elapsed < 5.0, elapsed  # was 10.7 s and a 92 MB answer


def test_a_valid_batch_still_passes() -> None:
    assert len(validate_jobs([job() for _ in range(10)], Projects(), CHECKS)) == 10  # type: ignore[arg-type]
