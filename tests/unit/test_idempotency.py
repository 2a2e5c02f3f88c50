"""A keyed creation applies once: the same key and body again writes nothing
and answers the first result; the same key with another body is a conflict."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler0.daemon.state import commands as c
from tests.unit.test_state_commands import NOW, Replica, job

pytestmark = pytest.mark.unit

DAY = 24 * 3600.0


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    r = Replica(tmp_path / "state.db")
    r.ok(c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
    yield r
    r.close()


def created(now: float, key: list[object] | None, jobs: int = 3) -> c.JobsCreated:
    return c.JobsCreated(now=now, jobs=[job() for _ in range(jobs)], idempotency=key)


def count(r: Replica, table: str) -> int:
    (n,) = r.one(f"SELECT COUNT(*) FROM {table}")
    return int(n)


def test_a_retry_with_the_same_key_and_body_writes_nothing(replica: Replica) -> None:
    key = ["k1", "body-a", NOW + DAY]
    assert replica.ok(created(NOW, key)) == {"ids": [1, 3]}
    assert replica.ok(created(NOW + 60, key)) == {"ids": [1, 3], "replayed": True}
    assert count(replica, "jobs") == 3


def test_a_reused_key_with_another_body_is_a_conflict_naming_the_header(
    replica: Replica,
) -> None:
    replica.ok(created(NOW, ["k1", "body-a", NOW + DAY]))
    error = replica.refused(created(NOW + 1, ["k1", "body-b", NOW + 1 + DAY]), "conflict")
    assert error["details"][0]["field"] == "Idempotency-Key"
    assert count(replica, "jobs") == 3


def test_without_a_key_every_request_creates(replica: Replica) -> None:
    replica.ok(created(NOW, None))
    replica.ok(created(NOW, None))
    assert count(replica, "jobs") == 6
    assert count(replica, "idempotency_keys") == 0


def test_an_expired_key_is_forgotten_and_the_request_applies_anew(replica: Replica) -> None:
    replica.ok(created(NOW, ["k1", "body-a", NOW + DAY]))
    assert replica.ok(created(NOW + DAY + 1, ["k1", "body-a", NOW + 2 * DAY])) == {"ids": [4, 6]}
    assert count(replica, "jobs") == 6
    assert replica.one("SELECT expires_at FROM idempotency_keys") == (NOW + 2 * DAY,)


def test_a_refused_request_is_not_remembered(replica: Replica) -> None:
    refused = c.JobsCreated(now=NOW, jobs=[job(project_id=9)], idempotency=["k1", "f", NOW + DAY])
    replica.refused(refused, "validation_failed")
    assert count(replica, "idempotency_keys") == 0
    assert replica.ok(created(NOW, ["k1", "f", NOW + DAY])) == {"ids": [1, 3]}


def test_a_keyed_project_creation_replays_its_id(replica: Replica) -> None:
    """(The proposer folds the caller and the route into the key.)"""
    replica.ok(created(NOW, ["jobs-key", "f", NOW + DAY]))
    project = c.ProjectCreated(
        now=NOW,
        name="q",
        description="",
        signing_secret="s2",
        idempotency=["projects-key", "g", NOW + DAY],
    )
    assert replica.ok(project) == {"id": 2}
    assert replica.ok(project) == {"id": 2, "replayed": True}
    assert count(replica, "projects") == 2
