"""The job policy model: every policy optional, snake_case and camelCase, a
422 naming the field for every bad value, and the stored form."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler0.daemon.api.jobs import policy_problems
from scheduler0.daemon.scheduling.policy import DEFAULT_POLICY, policy_of
from scheduler0.daemon.state.schema import encode_policy
from scheduler0.errors import ValidationFailed
from scheduler0.models import JobIn, JobPatch, PauseIn, parse_one

pytestmark = pytest.mark.unit

BASE = {"project_id": 1, "spec": "*/5 * * * *", "callback_url": "http://127.0.0.1:9/cb"}


def fields_of(model: type[Any], body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_one(model, body)
    return [(d.field, d.message) for d in caught.value.details]


def test_a_job_without_policies_stores_none() -> None:
    job = parse_one(JobIn, BASE)
    assert job.policy() is None
    assert encode_policy(job.policy()) is None
    assert policy_of(None) == DEFAULT_POLICY
    assert (DEFAULT_POLICY.overlap, DEFAULT_POLICY.catchup) == ("allow", "latest")
    assert DEFAULT_POLICY.window(60.0) == 60.0
    assert DEFAULT_POLICY.runs_left(10**6) is None


def test_every_policy_in_camel_case_is_stored_in_snake_case() -> None:
    job = parse_one(
        JobIn,
        {
            **BASE,
            "overlap": "buffer_one",
            "retry": {
                "attempts": 4,
                "initialSeconds": 1.5,
                "multiplier": 2,
                "capSeconds": 30,
                "jitter": 0.2,
            },
            "timeoutSeconds": 5,
            "catchup": "all",
            "catchupWindowSeconds": 600,
            "startAt": "2030-01-01T01:00:00+01:00",
            "endAt": "2030-02-01T00:00:00Z",
            "jitterSeconds": 20,
            "maxRuns": 3,
            "pauseAfterFailures": 5,
        },
    )
    assert job.policy() == {
        "overlap": "buffer_one",
        "retry": {
            "attempts": 4,
            "initial_seconds": 1.5,
            "multiplier": 2.0,
            "cap_seconds": 30.0,
            "jitter": 0.2,
        },
        "timeout_seconds": 5.0,
        "catchup": "all",
        "catchup_window_seconds": 600.0,
        "start_at": 1893456000.0,
        "end_at": 1896134400.0,
        "jitter_seconds": 20,
        "max_runs": 3,
        "pause_after_failures": 5,
    }
    stored = encode_policy(job.policy())
    assert stored is not None and stored.startswith('{"catchup":"all"')  # sorted keys
    policy = policy_of(stored)
    assert (policy.max_runs, policy.jitter_seconds, policy.window(60.0)) == (3, 20, 600.0)
    assert policy.runs_left(2) == 1 and policy.runs_left(5) == 0


@pytest.mark.parametrize(
    ("given", "field", "says"),
    [
        ({"overlap": "queue"}, "overlap", "'allow', 'skip' or 'buffer_one'"),
        ({"catchup": "some"}, "catchup", "'latest', 'all' or 'none'"),
        ({"retry": {"attempts": -1}}, "retry.attempts", "greater than or equal to 0"),
        ({"retry": {"attempts": 101}}, "retry.attempts", "less than or equal to 100"),
        ({"retry": {"attempts": "3"}}, "retry.attempts", "valid integer"),
        ({"retry": {"multiplier": 0.5}}, "retry.multiplier", "greater than or equal to 1"),
        ({"retry": {"jitter": 2}}, "retry.jitter", "less than or equal to 1"),
        ({"retry": {"initialSeconds": -1}}, "retry.initial_seconds", "greater than or equal"),
        (
            {"retry": {"initial_seconds": 10, "cap_seconds": 5}},
            "retry.cap_seconds",
            "not be less than initial_seconds",
        ),
        ({"retry": {"tries": 3}}, "retry.tries", "unknown field"),
        ({"retry": 3}, "retry", "valid dictionary"),
        ({"timeout_seconds": 0}, "timeout_seconds", "greater than 0"),
        ({"timeoutSeconds": 4000}, "timeout_seconds", "less than or equal to 3600"),
        ({"catchup_window_seconds": 0}, "catchup_window_seconds", "greater than or equal to 1"),
        ({"start_at": "2030-01-01T00:00:00"}, "start_at", "with its offset"),
        ({"start_at": "tomorrow"}, "start_at", "RFC 3339"),
        ({"start_at": 1893456000}, "start_at", "RFC 3339 time string"),
        ({"end_at": "2030-02-30T00:00:00Z"}, "end_at", "not a valid time"),
        (
            {"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"},
            "end_at",
            "later than start_at",
        ),
        (
            {"startAt": "2030-01-01T00:00:00Z", "endAt": "2030-01-01T00:00:00Z"},
            "end_at",
            "later than start_at",
        ),
        ({"jitter_seconds": -1}, "jitter_seconds", "greater than or equal to 0"),
        ({"jitterSeconds": 3601}, "jitter_seconds", "less than or equal to 3600"),
        ({"jitter_seconds": 1.5}, "jitter_seconds", "valid integer"),
        ({"max_runs": 0}, "max_runs", "greater than or equal to 1"),
        ({"pause_after_failures": 0}, "pause_after_failures", "greater than or equal to 1"),
        ({"maxRuns": True}, "max_runs", "valid integer"),
    ],
)
def test_a_bad_policy_is_refused_naming_its_field(
    given: dict[str, Any], field: str, says: str
) -> None:
    errors = fields_of(JobIn, {**BASE, **given})
    assert [name for name, _ in errors] == [field]
    assert says in errors[0][1]


def test_a_policy_given_in_both_spellings_is_refused() -> None:
    errors = fields_of(JobIn, {**BASE, "max_runs": 2, "maxRuns": 3})
    assert errors == [("max_runs", "given twice, as max_runs and maxRuns")]


def test_a_patch_may_return_a_policy_to_its_default_with_null() -> None:
    patch = parse_one(JobPatch, {"overlap": None, "maxRuns": 4, "retry": {"attempts": 0}})
    assert patch.policy_changes() == {"max_runs": 4, "overlap": None, "retry": {"attempts": 0}}
    assert fields_of(JobPatch, {"spec": None}) == [
        ("spec", "must not be null; leave the field out to keep its value")
    ]


def test_pause_notes_are_plain_bounded_text() -> None:
    assert parse_one(PauseIn, {}).note is None
    assert parse_one(PauseIn, {"note": "maintenance"}).note == "maintenance"
    assert fields_of(PauseIn, {"note": "a\x1b[2Jb"})[0][0] == "note"
    assert fields_of(PauseIn, {"note": "x" * 1025})[0][0] == "note"


NOW = 1_900_000_000.0


@pytest.mark.parametrize(
    ("spec", "policy", "field", "says"),
    [
        ("@at 2020-01-01T00:00:00Z", {}, "spec", "not in the future"),
        ("@every 30s", {"jitter_seconds": 30}, "jitter_seconds", "less than the @every period"),
        ("* * * * *", {"start_at": NOW + 10, "end_at": NOW}, "end_at", "later than start_at"),
    ],
)
def test_what_depends_on_the_spec_or_the_clock_is_refused_naming_its_field(
    spec: str, policy: dict[str, Any], field: str, says: str
) -> None:
    problems = policy_problems(spec, "UTC", policy, NOW)
    assert [(p.field, says in p.message) for p in problems] == [(field, True)]


def test_an_unchanged_one_shot_spec_is_not_checked_against_the_clock_again() -> None:
    assert policy_problems("@at 2020-01-01T00:00:00Z", "UTC", {}, NOW, new_spec=False) == []
    assert policy_problems("@every 31s", "UTC", {"jitter_seconds": 30}, NOW) == []
