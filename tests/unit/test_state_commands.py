"""Every command type, applied to a real SQLite replica: rows, results, refusals.

Each test applies commands the way raft does (``StateMachine.apply`` of the
encoded bytes) and reads the database back through its own connection.

How "every command type is tested" is enforced (the last tests of the module):

* Each test names the command types it is about with ``@covers(...)``, which
  records them in ``COVERED`` at import time. ``COVERED`` is compared with
  ``commands.COMMAND_TYPES``: a type added to the registry without a test here
  fails ``test_every_command_type_has_a_test``. The comparison is static, so it
  holds whichever tests are selected (``-k``, ``-x``, xdist) and in any order,
  which a session-wide recorder checked "at the end" would not.
* A declaration cannot lie: the ``replica`` fixture records every command it
  applied (decoded back from the bytes, named through ``COMMAND_TYPES``), and
  after each test checks that every type the test ``covers`` was applied, and
  accepted (``{"ok": ...}``), at least once.
* ``test_every_command_type_has_a_handler`` applies a zero-valued instance of
  every registered type: ``apply`` must return a value (``ok`` or a domain
  refusal), never raise (a type without a handler raises ``KeyError`` out of
  ``apply``, which pysyncobj would retry forever).

Only ``commands.COMMAND_TYPES`` and ``commands.encode/decode`` are relied on
to name types, so the registry may be built differently later.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.handlers.audit import fair_level
from scheduler0.daemon.state.handlers.firing import _past_per_job
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import (
    BUCKETS,
    MANUAL_PER_SECOND,
    RUN_SECOND_SQL,
    bucket_of,
    connect,
    execution_id,
    manual_slot,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
T0 = int(NOW)

NAME_OF: dict[type[c.Command], str] = {cls: name for name, cls in c.COMMAND_TYPES.items()}
COVERED: dict[str, list[str]] = {}
"""Command type name -> the tests that declare they exercise it."""

F = TypeVar("F", bound=Callable[..., Any])


def covers(*kinds: type[c.Command]) -> Callable[[F], F]:
    def declare(test: F) -> F:
        names = tuple(NAME_OF[kind] for kind in kinds)
        for name in names:
            COVERED.setdefault(name, []).append(test.__name__)
        test.covers = names  # type: ignore[attr-defined]
        return test

    return declare


class Replica:
    """A state machine on a real SQLite file that remembers what it applied."""

    def __init__(self, path: Path, on_change: Callable[[str, Any], None] | None = None) -> None:
        self.path = path
        self.machine = StateMachine(path, on_change)
        self.applied: list[tuple[str, bool]] = []
        self._reader = sqlite3.connect(path)

    def apply(self, command: c.Command) -> dict[str, Any]:
        payload = c.encode(command)
        result = self.machine.apply(payload)
        self.applied.append((NAME_OF[type(c.decode(payload))], "ok" in result))
        return result

    def ok(self, command: c.Command) -> Any:
        result = self.apply(command)
        assert "ok" in result, result
        return result["ok"]

    def refused(self, command: c.Command, code: str) -> dict[str, Any]:
        result = self.apply(command)
        assert "error" in result, result
        assert result["error"]["code"] == code, result
        error: dict[str, Any] = result["error"]
        return error

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self._reader.execute(sql, params).fetchall()

    def one(self, sql: str, *params: Any) -> tuple[Any, ...]:
        row = self._reader.execute(sql, params).fetchone()
        assert row is not None, sql
        return tuple(row)

    def dump(self) -> list[str]:
        return list(self._reader.iterdump())

    def close(self) -> None:
        self._reader.close()
        self.machine.close()


@pytest.fixture
def replica(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Replica]:
    r = Replica(tmp_path / "state.db")
    yield r
    r.close()
    accepted = {name for name, ok in r.applied if ok}
    unproven = [n for n in getattr(request.function, "covers", ()) if n not in accepted]
    assert not unproven, f"{request.function.__name__} covers {unproven} but never applied one"


def job(project_id: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "spec": "@every 1m",
        "timezone": "UTC",
        "data": '{"n":1}',
        "callback_url": "http://127.0.0.1:1/cb",
        "execution_type": "http",
        "anchor": T0,
        **overrides,
    }


def seed(r: Replica, jobs: int = 6, owner: int = 1) -> None:
    """Epoch 1 with every bucket on ``owner``, project 1, jobs 1..``jobs``."""
    r.ok(c.AssignmentChanged(now=NOW, epoch=1, owners=[owner] * BUCKETS))
    r.ok(c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
    if jobs:
        r.ok(c.JobsCreated(now=NOW, jobs=[job() for _ in range(jobs)]))


def fire(r: Replica, fires: list[list[int]], now: float = NOW, node: int = 1) -> list[list[int]]:
    accepted: list[list[int]] = r.ok(c.SlotsFired(now=now, node_id=node, epoch=1, fires=fires))[
        "accepted"
    ]
    return accepted


def settle(r: Replica, ids: list[int], slot: int, now: float, state: str = "success") -> None:
    code = 200 if state == "success" else 500
    r.ok(c.ResultsRecorded(now=now, node_id=1, groups=[[slot, state, code, 1, 3, None, ids]]))


def states(r: Replica, where: str = "1") -> list[tuple[Any, ...]]:
    return r.rows(f"SELECT job_id, slot, state FROM executions WHERE {where} ORDER BY job_id, slot")


# -- Noop ----------------------------------------------------------------------------------


@covers(c.Noop)
def test_noop_is_a_barrier_that_changes_nothing(replica: Replica) -> None:
    seed(replica)
    before = replica.dump()
    assert replica.ok(c.Noop(now=NOW)) is None
    assert replica.ok(c.Noop()) is None  # ``now`` is optional
    assert replica.dump() == before


# -- projects ------------------------------------------------------------------------------


@covers(c.ProjectCreated)
def test_project_created_gets_the_next_id_and_a_unique_name(replica: Replica) -> None:
    assert replica.ok(
        c.ProjectCreated(now=NOW, name="a", description="d", signing_secret="s1")
    ) == {"id": 1}
    assert (
        replica.ok(c.ProjectCreated(now=NOW + 1, name="b", description="", signing_secret="s2"))[
            "id"
        ]
        == 2
    )
    err = replica.refused(
        c.ProjectCreated(now=NOW, name="a", description="", signing_secret="x"), "conflict"
    )
    assert err["details"] == [{"field": "name", "message": "already taken"}]
    assert replica.rows("SELECT * FROM projects ORDER BY id") == [
        (1, "a", "d", "s1", NOW, NOW, None, None),  # created_by, modified_by: not known
        (2, "b", "", "s2", NOW + 1, NOW + 1, None, None),
    ]


@covers(c.ProjectUpdated)
def test_project_updated_sets_only_the_given_fields(replica: Replica) -> None:
    replica.ok(c.ProjectCreated(now=NOW, name="a", description="old", signing_secret="s"))
    replica.ok(c.ProjectCreated(now=NOW, name="b", description="", signing_secret="s"))
    assert replica.ok(c.ProjectUpdated(now=NOW + 1, project_id=1, description="new")) == {"id": 1}
    assert replica.one(
        "SELECT name, description, created_at, updated_at FROM projects WHERE id = 1"
    ) == (
        "a",
        "new",
        NOW,
        NOW + 1,
    )
    replica.ok(c.ProjectUpdated(now=NOW + 2, project_id=1, name="renamed"))
    assert replica.one("SELECT name, description, updated_at FROM projects WHERE id = 1") == (
        "renamed",
        "new",
        NOW + 2,
    )
    # Its own name is not a clash; another project's name is.
    replica.ok(c.ProjectUpdated(now=NOW + 3, project_id=1, name="renamed"))
    err = replica.refused(c.ProjectUpdated(now=NOW + 4, project_id=1, name="b"), "conflict")
    assert err["details"] == [{"field": "name", "message": "already taken"}]
    replica.refused(c.ProjectUpdated(now=NOW + 4, project_id=9, name="z"), "not_found")
    assert replica.rows("SELECT id, name, updated_at FROM projects ORDER BY id") == [
        (1, "renamed", NOW + 3),
        (2, "b", NOW),
    ]


@covers(c.ProjectUpdated)
def test_project_updated_rotates_the_signing_secret_and_announces_its_jobs(
    tmp_path: Path,
) -> None:
    heard: list[tuple[str, Any]] = []
    replica = Replica(
        tmp_path / "r.db", on_change=lambda kind, detail: heard.append((kind, detail))
    )
    try:
        seed(replica, jobs=2)
        replica.ok(c.ProjectCreated(now=NOW, name="other", description="", signing_secret="o"))
        heard.clear()
        replica.ok(c.ProjectUpdated(now=NOW + 1, project_id=1, signing_secret="new"))
        replica.ok(c.ProjectUpdated(now=NOW + 2, project_id=2, description="no secret"))
        assert replica.rows("SELECT id, signing_secret FROM projects ORDER BY id") == [
            (1, "new"),
            (2, "o"),
        ]
    finally:
        replica.close()
    # Owners keep each job's callback head with its secret: they re-read project 1's jobs.
    assert heard == [("jobs", [1, 2])]


@covers(c.ProjectDeleted)
def test_project_deleted_only_once_it_has_no_jobs(replica: Replica) -> None:
    seed(replica, jobs=2)
    replica.ok(c.ProjectCreated(now=NOW, name="empty", description="", signing_secret="s"))
    assert replica.ok(c.ProjectDeleted(now=NOW, project_id=2)) == {"id": 2}
    err = replica.refused(c.ProjectDeleted(now=NOW, project_id=1), "conflict")
    assert err["message"] == "project 1 still has 2 job(s); delete them first"
    replica.ok(c.JobDeleted(now=NOW, job_id=1))
    replica.ok(c.JobDeleted(now=NOW, job_id=2))
    replica.ok(c.ProjectDeleted(now=NOW, project_id=1))
    replica.refused(c.ProjectDeleted(now=NOW, project_id=1), "not_found")
    assert replica.rows("SELECT id FROM projects") == []
    # Ids are never reused (AUTOINCREMENT): replicas must agree on the next one.
    assert replica.ok(c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s")) == {
        "id": 3
    }


# -- executors (version 5) -----------------------------------------------------------------


URL = "http://127.0.0.1:2/hooks"
V2 = "http://127.0.0.1:3/v2"


def executor(**overrides: Any) -> c.ExecutorCreated:
    fields: dict[str, Any] = {
        "now": NOW,
        "name": "billing",
        "webhook_url": URL,
        "webhook_method": "PUT",
        "webhook_secret": "exec-secret",
        "created_by": "ops",
        **overrides,
    }
    return c.ExecutorCreated(**fields)


EXECUTOR_ROW = "SELECT id, name, type, webhook_url, webhook_method, webhook_secret, created_by,"
EXECUTOR_ROW += " modified_by, created_at, updated_at FROM executors ORDER BY id"


@covers(c.ExecutorCreated)
def test_executor_created_stores_what_the_proposer_stamped(replica: Replica) -> None:
    assert replica.ok(executor()) == {"id": 1}
    assert replica.ok(executor(now=NOW + 1, name="plain", webhook_secret=None)) == {"id": 2}
    assert replica.rows(EXECUTOR_ROW) == [
        (1, "billing", "webhook_url", URL, "PUT", "exec-secret", "ops", None, NOW, NOW),
        (2, "plain", "webhook_url", URL, "PUT", None, "ops", None, NOW + 1, NOW + 1),
    ]


@covers(c.ExecutorUpdated)
def test_executor_updated_sets_the_given_fields_and_tells_the_owners_of_its_jobs(
    replica: Replica,
) -> None:
    seed(replica, jobs=2)
    replica.ok(executor())
    replica.ok(c.JobsCreated(now=NOW, jobs=[job(callback_url="", executor_id=1) for _ in "ab"]))
    heard: list[tuple[str, Any]] = []
    replica.machine._on_change = lambda kind, detail: heard.append((kind, detail))
    changes = {"webhook_url": V2, "webhook_method": "POST"}
    replica.ok(c.ExecutorUpdated(now=NOW + 5, executor_id=1, changes={**changes}))
    replica.ok(
        c.ExecutorUpdated(
            now=NOW + 6, executor_id=1, changes={"webhook_secret": None, "modified_by": "dev"}
        )
    )
    assert replica.rows(EXECUTOR_ROW) == [
        (1, "billing", "webhook_url", V2, "POST", None, "ops", "dev", NOW, NOW + 6)
    ]
    assert heard == [("jobs", [3, 4]), ("jobs", [3, 4])]
    err = replica.refused(c.ExecutorUpdated(now=NOW, executor_id=9, changes={}), "not_found")
    assert err["message"] == "no executor with id 9"


@covers(c.ExecutorDeleted)
def test_executor_deleted_only_once_no_job_uses_it(replica: Replica) -> None:
    seed(replica, jobs=0)
    replica.ok(executor())
    replica.ok(c.JobsCreated(now=NOW, jobs=[job(callback_url="", executor_id=1) for _ in "ab"]))
    err = replica.refused(c.ExecutorDeleted(now=NOW, executor_id=1, deleted_by="ops"), "conflict")
    assert err["message"] == (
        "executor 1 is used by 2 job(s); point them at another executor or callback_url,"
        " or delete them, first"
    )
    replica.ok(c.JobDeleted(now=NOW, job_id=1))
    replica.ok(
        c.JobUpdated(
            now=NOW, job_id=2, changes={"callback_url": "http://x.test/", "executor_id": None}
        )
    )
    assert replica.ok(c.ExecutorDeleted(now=NOW, executor_id=1, deleted_by="ops")) == {"id": 1}
    assert replica.rows("SELECT id FROM executors") == []
    replica.refused(c.ExecutorDeleted(now=NOW, executor_id=1), "not_found")


def test_jobs_naming_an_unknown_executor_are_refused_naming_each_item(replica: Replica) -> None:
    seed(replica, jobs=0)
    replica.ok(executor())
    err = replica.refused(
        c.JobsCreated(
            now=NOW,
            jobs=[job(callback_url="", executor_id=1), job(), job(callback_url="", executor_id=7)],
        ),
        "validation_failed",
    )
    assert err["details"] == [
        {"field": "executor_id", "message": "no executor with id 7", "index": 2}
    ]
    assert replica.rows("SELECT id FROM jobs") == []
    replica.ok(c.JobsCreated(now=NOW, jobs=[job(), job(callback_url="", executor_id=1)]))
    assert replica.rows("SELECT id, callback_url, executor_id FROM jobs ORDER BY id") == [
        (1, "http://127.0.0.1:1/cb", None),
        (2, "", 1),
    ]
    err = replica.refused(
        c.JobUpdated(now=NOW, job_id=1, changes={"executor_id": 5, "callback_url": ""}),
        "validation_failed",
    )
    assert err["details"] == [{"field": "executor_id", "message": "no executor with id 5"}]
    assert replica.one("SELECT callback_url, executor_id FROM jobs WHERE id = 1") == (
        "http://127.0.0.1:1/cb",
        None,
    )


def test_a_fire_of_an_executor_job_goes_to_its_url_method_and_secret(
    replica: Replica,
) -> None:
    """What the owner reads to send a fire: the executor's URL, method and
    secret, read when sent (a change of the executor applies to later fires);
    the project's secret for an executor without one; the job's own URL, POST
    and the project's secret for every other job."""
    seed(replica, jobs=1)
    replica.ok(executor())
    replica.ok(executor(name="no secret", webhook_url="http://127.0.0.1:4/", webhook_secret=None))
    replica.ok(
        c.JobsCreated(
            now=NOW,
            jobs=[job(callback_url="", executor_id=1), job(callback_url="", executor_id=2)],
        )
    )
    reader = Queries(replica.path)

    def sent() -> list[tuple[Any, ...]]:
        rows = reader.fire_payloads([[1, T0], [2, T0], [3, T0]])
        return [
            (job_id, row["callback_url"], row["method"], row["signing_secret"])
            for job_id, row in sorted(rows.items())
        ]

    try:
        assert sent() == [
            (1, "http://127.0.0.1:1/cb", "POST", "s"),
            (2, "http://127.0.0.1:2/hooks", "PUT", "exec-secret"),
            (3, "http://127.0.0.1:4/", "PUT", "s"),
        ]
        replica.ok(
            c.ExecutorUpdated(
                now=NOW,
                executor_id=1,
                changes={"webhook_url": "http://127.0.0.1:5/v2", "webhook_secret": "rotated"},
            )
        )
        assert sent()[1] == (2, "http://127.0.0.1:5/v2", "PUT", "rotated")
    finally:
        reader.db.close()


# -- credentials ---------------------------------------------------------------------------


@covers(c.CredentialCreated)
def test_credential_created_stores_the_stamped_key_and_hash(replica: Replica) -> None:
    assert replica.ok(
        c.CredentialCreated(now=NOW, api_key="k1", secret_hash="h1", description="ci")
    ) == {"id": 1}
    assert replica.ok(c.CredentialCreated(now=NOW + 1, api_key="k2", secret_hash="h2")) == {"id": 2}
    before = replica.dump()
    # A duplicate key (the proposer generates keys, so only by accident) is refused whole.
    assert "error" in replica.apply(c.CredentialCreated(now=NOW, api_key="k1", secret_hash="x"))
    assert replica.dump() == before
    # Without scopes, projects or expiry (as every entry before version 3):
    # NULL, which means every scope, every project, never.
    assert replica.rows("SELECT * FROM credentials ORDER BY id") == [
        (1, "k1", "h1", "ci", 0, NOW, NOW, None, None, None, None, None),
        (2, "k2", "h2", "", 0, NOW + 1, NOW + 1, None, None, None, None, None),
    ]


@covers(c.CredentialCreated)
def test_credential_created_with_scopes_projects_and_expiry(replica: Replica) -> None:
    scoped = c.CredentialCreated(
        now=NOW,
        api_key="k1",
        secret_hash="h1",
        scopes=["read", "execute"],
        projects=[3, 4],
        expires_at=NOW + 60,
        created_by="ops",
        archived=True,
    )
    assert replica.ok(scoped) == {"id": 1}
    assert replica.rows(
        "SELECT scopes, projects, expires_at, created_by, archived FROM credentials"
    ) == [('["read","execute"]', "[3,4]", NOW + 60, "ops", 1)]


@covers(c.CredentialArchived)
def test_credential_archived_and_unarchived(replica: Replica) -> None:
    replica.ok(c.CredentialCreated(now=NOW, api_key="k1", secret_hash="h1"))
    replica.ok(c.CredentialCreated(now=NOW, api_key="k2", secret_hash="h2"))
    assert replica.ok(c.CredentialArchived(now=NOW + 1, credential_id=1)) == {"id": 1}
    assert replica.rows("SELECT id, archived, updated_at FROM credentials ORDER BY id") == [
        (1, 1, NOW + 1),
        (2, 0, NOW),
    ]
    replica.ok(c.CredentialArchived(now=NOW + 2, credential_id=1, archived=False))
    assert replica.one("SELECT archived, updated_at, api_key FROM credentials WHERE id = 1") == (
        0,
        NOW + 2,
        "k1",
    )
    replica.refused(c.CredentialArchived(now=NOW, credential_id=3), "not_found")


@covers(c.CredentialDeleted)
def test_credential_deleted_once(replica: Replica) -> None:
    replica.ok(c.CredentialCreated(now=NOW, api_key="k1", secret_hash="h1"))
    replica.ok(c.CredentialCreated(now=NOW, api_key="k2", secret_hash="h2"))
    assert replica.ok(c.CredentialDeleted(now=NOW, credential_id=1)) == {"id": 1}
    replica.refused(c.CredentialDeleted(now=NOW, credential_id=1), "not_found")
    assert replica.rows("SELECT id, api_key FROM credentials") == [(2, "k2")]
    # The key is free again; the id is not reused.
    assert replica.ok(c.CredentialCreated(now=NOW, api_key="k1", secret_hash="h3")) == {"id": 3}


# -- jobs ----------------------------------------------------------------------------------


@covers(c.JobsCreated)
def test_jobs_created_get_consecutive_ids_buckets_and_defaults(replica: Replica) -> None:
    seed(replica, jobs=0)
    bare = {k: v for k, v in job().items() if k not in ("data", "execution_type")}
    assert replica.ok(c.JobsCreated(now=NOW, jobs=[job(), bare, job(anchor=T0 + 7)])) == {
        "ids": [1, 3]
    }
    assert replica.rows(
        "SELECT id, bucket, data, execution_type, anchor, not_before, paused, last_fired_slot,"
        " fired_count, created_at FROM jobs ORDER BY id"
    ) == [
        (1, bucket_of(1), '{"n":1}', "http", T0, T0, 0, None, 0, NOW),
        (2, bucket_of(2), None, "http", T0, T0, 0, None, 0, NOW),
        (3, bucket_of(3), '{"n":1}', "http", T0 + 7, T0 + 7, 0, None, 0, NOW),
    ]
    assert replica.ok(c.JobsCreated(now=NOW, jobs=[])) == {"ids": []}
    # Ids continue after the highest ever used, even once it is deleted.
    replica.ok(c.JobDeleted(now=NOW, job_id=3))
    assert replica.ok(c.JobsCreated(now=NOW, jobs=[job()])) == {"ids": [4, 4]}
    err = replica.refused(
        c.JobsCreated(now=NOW, jobs=[job(), job(project_id=7)]), "validation_failed"
    )
    assert err["details"] == [
        {"field": "project_id", "message": "no project with id 7", "index": 1}
    ]
    assert replica.rows("SELECT id FROM jobs ORDER BY id") == [(1,), (2,), (4,)]


@covers(c.JobUpdated)
def test_job_updated_sets_only_job_columns(replica: Replica) -> None:
    seed(replica, jobs=2)
    changes = {
        "spec": "@every 5s",
        "timezone": "Europe/Paris",
        "callback_url": "http://h/new",
        "data": None,
        "anchor": T0 + 5,
        "not_before": T0 + 5,
        # Not settable through JobUpdated: ignored, not an error.
        "paused": 1,
        "project_id": 2,
        "bucket": 0,
        "last_fired_slot": 99,
        "fired_count": 5,
    }
    assert replica.ok(c.JobUpdated(now=NOW + 1, job_id=2, changes=changes)) == {"id": 2}
    assert replica.rows(
        "SELECT id, spec, timezone, data, callback_url, anchor, not_before, updated_at"
        " FROM jobs ORDER BY id"
    ) == [
        (1, "@every 1m", "UTC", '{"n":1}', "http://127.0.0.1:1/cb", T0, T0, NOW),
        (2, "@every 5s", "Europe/Paris", None, "http://h/new", T0 + 5, T0 + 5, NOW + 1),
    ]
    assert replica.rows(
        "SELECT id, project_id, bucket, paused, last_fired_slot, fired_count FROM jobs ORDER BY id"
    ) == [(1, 1, bucket_of(1), 0, None, 0), (2, 1, bucket_of(2), 0, None, 0)]
    # Nothing settable: the row is left alone (not even updated_at).
    replica.ok(c.JobUpdated(now=NOW + 2, job_id=1, changes={"paused": 1}))
    assert replica.one("SELECT paused, updated_at FROM jobs WHERE id = 1") == (0, NOW)
    replica.refused(c.JobUpdated(now=NOW, job_id=9, changes={"spec": "@every 1s"}), "not_found")


@covers(c.JobDeleted)
def test_job_deleted_with_its_executions(replica: Replica) -> None:
    seed(replica, jobs=3)
    fire(replica, [[1, T0], [2, T0], [3, T0]])
    assert replica.ok(c.JobDeleted(now=NOW, job_id=2)) == {"id": 2}
    assert states(replica) == [(1, T0, "dispatched"), (3, T0, "dispatched")]
    assert replica.rows("SELECT id FROM jobs ORDER BY id") == [(1,), (3,)]
    replica.refused(c.JobDeleted(now=NOW, job_id=2), "not_found")
    assert fire(replica, [[2, T0 + 60]]) == []  # a deleted job never fires


@covers(c.JobsCreated, c.JobUpdated, c.JobDeleted)
def test_job_names_are_unique_per_project_and_labels_are_searchable_rows(
    replica: Replica,
) -> None:
    seed(replica, jobs=0)
    replica.ok(c.ProjectCreated(now=NOW, name="q", description="", signing_secret="s"))
    created = c.JobsCreated(
        now=NOW,
        jobs=[
            job(name="billing", labels={"team": "ops", "tier": "1"}),
            job(project_id=2, name="billing"),  # another project: free
            job(),  # no name, no labels (as every older entry)
        ],
    )
    assert replica.ok(created) == {"ids": [1, 3]}
    assert replica.rows("SELECT id, project_id, name, labels FROM jobs ORDER BY id") == [
        (1, 1, "billing", '{"team":"ops","tier":"1"}'),
        (2, 2, "billing", None),
        (3, 1, None, None),
    ]
    assert replica.rows("SELECT job_id, key, value FROM job_labels ORDER BY job_id, key") == [
        (1, "team", "ops"),
        (1, "tier", "1"),
    ]
    # Taken in the project, or twice in one batch: 409 naming the items, nothing created.
    err = replica.refused(
        c.JobsCreated(now=NOW, jobs=[job(name="a"), job(name="billing"), job(name="a")]),
        "conflict",
    )
    assert err["message"] == "item 1: a job named 'billing' already exists in project 1"
    assert err["details"] == [
        {"field": "name", "message": "already taken", "index": 1},
        {"field": "name", "message": "already taken", "index": 2},
    ]
    assert replica.one("SELECT COUNT(*) FROM jobs") == (3,)
    # Renaming onto a taken name is refused; onto its own name, or clearing, is not.
    err = replica.refused(c.JobUpdated(now=NOW, job_id=3, changes={"name": "billing"}), "conflict")
    assert err["details"] == [{"field": "name", "message": "already taken"}]
    replica.ok(c.JobUpdated(now=NOW, job_id=1, changes={"name": "billing"}))
    replica.ok(c.JobUpdated(now=NOW, job_id=3, changes={"name": "report", "labels": {"a": "b"}}))
    replica.ok(c.JobUpdated(now=NOW, job_id=1, changes={"name": None, "labels": {}}))
    assert replica.rows("SELECT id, name, labels FROM jobs ORDER BY id") == [
        (1, None, None),
        (2, "billing", None),
        (3, "report", '{"a":"b"}'),
    ]
    assert replica.rows("SELECT job_id, key, value FROM job_labels") == [(3, "a", "b")]
    # A change without labels (every older entry) keeps them.
    replica.ok(c.JobUpdated(now=NOW, job_id=3, changes={"spec": "@every 5s"}))
    assert replica.rows("SELECT job_id, key, value FROM job_labels") == [(3, "a", "b")]
    replica.ok(c.JobDeleted(now=NOW, job_id=3))
    assert replica.rows("SELECT * FROM job_labels") == []
    # The name is free again.
    assert replica.ok(c.JobsCreated(now=NOW, jobs=[job(name="report")])) == {"ids": [4, 4]}


@covers(c.JobPaused)
def test_job_paused_stops_firing_and_resuming_skips_the_pause(replica: Replica) -> None:
    seed(replica, jobs=2)
    assert replica.ok(c.JobPaused(now=NOW + 10, job_id=1, paused=True)) == {"id": 1, "paused": True}
    assert replica.one("SELECT paused, not_before, updated_at FROM jobs WHERE id = 1") == (
        1,
        T0,
        NOW + 10,
    )
    assert fire(replica, [[1, T0 + 60], [2, T0 + 60]]) == [[2, T0 + 60]]
    replica.ok(c.JobPaused(now=NOW + 500.7, job_id=1, paused=False))
    # Slots that fell due while paused are not owed: not_before moves to resume time.
    assert replica.one("SELECT paused, not_before FROM jobs WHERE id = 1") == (0, T0 + 500)
    assert fire(replica, [[1, T0 + 540]]) == [[1, T0 + 540]]
    replica.refused(c.JobPaused(now=NOW, job_id=9, paused=True), "not_found")


@covers(c.JobTriggered)
def test_job_triggered_adds_one_pending_run_at_its_slot(replica: Replica) -> None:
    seed(replica, jobs=2)
    assert replica.ok(c.JobTriggered(now=NOW + 0.5, job_id=2, slot=T0)) == {"job_id": 2, "slot": T0}
    assert replica.rows(
        "SELECT job_id, project_id, slot, state, node_id, epoch, attempts, created_at"
        " FROM executions"
    ) == [(2, 1, T0, "pending", None, None, 0, NOW + 0.5)]
    # The job's own schedule is untouched.
    assert replica.one("SELECT last_fired_slot, fired_count FROM jobs WHERE id = 2") == (None, 0)
    err = replica.refused(c.JobTriggered(now=NOW + 0.9, job_id=2, slot=T0), "conflict")
    assert err["message"] == f"job 2 already has a run at slot {T0}"
    replica.refused(c.JobTriggered(now=NOW, job_id=9, slot=T0), "not_found")
    # The bucket's owner picks the pending run up.
    assert replica.ok(c.ExecutionsRedispatched(now=NOW + 1, node_id=1, executions=[[2, T0]])) == {
        "accepted": [[2, T0]]
    }
    assert states(replica) == [(2, T0, "dispatched")]


@covers(c.JobBackfilled)
def test_job_backfilled_queues_each_unfired_past_slot_once(replica: Replica) -> None:
    seed(replica, jobs=2)
    assert fire(replica, [[1, T0 + 60]]) == [[1, T0 + 60]]
    settle(replica, [1], T0 + 60, NOW + 61)
    replica.ok(
        c.SlotsFired(now=NOW + 130, node_id=1, epoch=1, fires=[], missed=[[1, [T0 + 120], 0]])
    )
    assert fire(replica, [[1, T0 + 180]], now=NOW + 180) == [[1, T0 + 180]]  # in flight
    slots = [T0 + 60, T0 + 120, T0 + 180, T0 + 240]
    result = replica.ok(c.JobBackfilled(now=NOW + 200, job_id=1, slots=slots))
    # T0+60 succeeded and T0+180 is in flight: done. T0+120 was missed: queued.
    # T0+240 is after the last fired slot: the schedule's own, left alone.
    assert result == {
        "job_id": 1,
        "requested": 4,
        "queued": 1,
        "already_done": 2,
        "left_to_schedule": 1,
        "first": T0 + 60,
        "last": T0 + 240,
    }
    assert replica.rows(
        "SELECT slot, state, trigger, node_id, error FROM executions WHERE job_id = 1 ORDER BY slot"
    ) == [
        (T0 + 60, "success", None, 1, None),
        (T0 + 120, "pending", "backfill", None, None),
        (T0 + 180, "dispatched", None, 1, None),
    ]
    # The schedule's bookkeeping is untouched: the backfill is not a scheduled run.
    assert replica.one(
        "SELECT last_fired_slot, fired_count, missed_count FROM jobs WHERE id = 1"
    ) == (T0 + 180, 2, 1)
    # Repeating it queues nothing; a never-fired job's slots before its start are queued.
    again = replica.ok(c.JobBackfilled(now=NOW + 201, job_id=1, slots=slots))
    assert (again["queued"], again["already_done"]) == (0, 3)
    before_start = replica.ok(c.JobBackfilled(now=NOW + 202, job_id=2, slots=[T0 - 60, T0]))
    assert (before_start["queued"], before_start["left_to_schedule"]) == (2, 0)
    assert states(replica, "trigger = 'backfill'") == [
        (1, T0 + 120, "pending"),
        (2, T0 - 60, "pending"),
        (2, T0, "pending"),
    ]
    # The bucket's owner picks them up with the ids the schedule would have used.
    accepted = replica.ok(
        c.ExecutionsRedispatched(now=NOW + 203, node_id=1, executions=[[1, T0 + 120]])
    )
    assert accepted == {"accepted": [[1, T0 + 120]]}
    assert execution_id(1, T0 + 120) == f"1-{T0 + 120}"
    replica.refused(c.JobBackfilled(now=NOW, job_id=9, slots=[T0]), "not_found")


def test_each_project_s_backfilled_runs_are_sent_in_turn_not_behind_another_s(
    replica: Replica, tmp_path: Path
) -> None:
    """``Queries.backfill_due``: project 1 queued 50 runs before project 2
    queued 5; a round of 10 takes 5 of each (oldest first within a project),
    not project 1's first 10. With more projects than runs a round, the
    rounds take the projects in turn."""
    seed(replica, jobs=1)
    replica.ok(c.ProjectCreated(now=NOW, name="q", description="", signing_secret="s"))
    replica.ok(c.JobsCreated(now=NOW, jobs=[job(project_id=2)]))
    replica.ok(c.JobBackfilled(now=NOW, job_id=1, slots=[T0 - 60 * k for k in range(50, 0, -1)]))
    replica.ok(c.JobBackfilled(now=NOW, job_id=2, slots=[T0 - 60 * k for k in range(5, 0, -1)]))
    queries = Queries(tmp_path / "state.db")
    every = range(BUCKETS)
    assert queries.projects_with_unsent_backfill() == [1, 2]
    assert (queries.unsent_backfill(1), queries.unsent_backfill(2)) == (50, 5)
    due = queries.backfill_due(every, 10)
    assert sorted(due) == sorted(
        [[1, T0 - 60 * k] for k in range(50, 45, -1)] + [[2, T0 - 60 * k] for k in range(5, 0, -1)]
    )
    assert [queries.backfill_due(every, 1)[0][0] for _ in range(4)] == [1, 2, 1, 2]
    replica.ok(c.JobPaused(now=NOW, job_id=1, paused=True))  # a paused job's wait
    assert {job_id for job_id, _ in queries.backfill_due(every, 10)} == {2}
    queries.db.close()


# -- firing --------------------------------------------------------------------------------


@covers(c.SlotsFired)
def test_slots_fired_accepts_owned_active_later_slots(replica: Replica) -> None:
    seed(replica, jobs=4)
    replica.ok(c.JobPaused(now=NOW, job_id=4, paused=True))
    fired = replica.ok(
        c.SlotsFired(
            now=NOW + 1,
            node_id=1,
            epoch=7,
            fires=[[1, T0], [2, T0], [4, T0], [9, T0], [1, T0]],
            missed=[[3, [T0 - 120, T0 - 60], 4]],
        )
    )
    assert fired == {"accepted": [[1, T0], [2, T0]]}
    assert replica.rows(
        "SELECT id, job_id, slot, state, node_id, epoch, created_at FROM executions ORDER BY id"
    ) == [
        (1, 3, T0 - 120, "missed", 1, 7, NOW + 1),
        (2, 3, T0 - 60, "missed", 1, 7, NOW + 1),
        (3, 1, T0, "dispatched", 1, 7, NOW + 1),
        (4, 2, T0, "dispatched", 1, 7, NOW + 1),
    ]
    assert replica.rows(
        "SELECT id, last_fired_slot, fired_count, missed_count, last_state FROM jobs ORDER BY id"
    ) == [
        (1, T0, 1, 0, "dispatched"),
        (2, T0, 1, 0, "dispatched"),
        (3, T0 - 60, 0, 6, "missed"),
        (4, None, 0, 0, None),
    ]
    # Another node, or an old slot, is refused.
    assert fire(replica, [[1, T0 + 60]], node=2) == []
    assert fire(replica, [[1, T0], [3, T0 - 60]]) == []


@covers(c.SlotsFired)
def test_slots_fired_records_skipped_slots_with_their_reason(replica: Replica) -> None:
    """Version 4: the proposer's overlap policy skipped them. They are recorded
    after the fires, only for an owned active job and a later slot, and take
    the slot without counting as a run."""
    seed(replica, jobs=0)
    replica.ok(
        c.JobsCreated(
            now=NOW,
            jobs=[job(policy={"overlap": "skip"}), job(policy={"max_runs": 1}), job(), job()],
        )
    )
    replica.ok(c.JobPaused(now=NOW, job_id=4, paused=True))
    fired = replica.ok(
        c.SlotsFired(
            now=NOW + 1,
            node_id=1,
            epoch=3,
            fires=[[1, T0], [2, T0]],
            skipped=[
                [1, [T0 - 60, T0 + 60, T0 + 120], "busy"],  # T0 - 60: before its fire
                [2, [T0 + 60], "busy"],  # its max_runs is spent
                [3, [T0 + 60], "busy"],
                [4, [T0 + 60], "busy"],  # paused
                [9, [T0 + 60], "busy"],  # no such job
            ],
            following=[[T0 + 180, [1, 3]]],
        )
    )
    assert fired == {"accepted": [[1, T0], [2, T0]]}
    assert replica.rows(
        "SELECT job_id, slot, state, node_id, epoch, error, created_at FROM executions ORDER BY id"
    ) == [
        (1, T0, "dispatched", 1, 3, None, NOW + 1),
        (2, T0, "dispatched", 1, 3, None, NOW + 1),
        (1, T0 + 60, "skipped", 1, 3, "busy", NOW + 1),
        (1, T0 + 120, "skipped", 1, 3, "busy", NOW + 1),
        (3, T0 + 60, "skipped", 1, 3, "busy", NOW + 1),
    ]
    assert replica.rows(
        "SELECT id, last_fired_slot, fired_count, last_state, next_run FROM jobs ORDER BY id"
    ) == [
        (1, T0 + 120, 1, "skipped", T0 + 180),
        (2, T0, 1, "dispatched", 2**62),
        (3, T0 + 60, 0, "skipped", T0 + 180),
        (4, None, 0, None, None),
    ]
    # A skipped slot is taken: neither a fire nor another skip gets it again.
    assert fire(replica, [[1, T0 + 120], [3, T0 + 60]]) == []
    replica.ok(
        c.SlotsFired(now=NOW + 2, node_id=2, epoch=3, fires=[], skipped=[[3, [T0 + 90], "x"]])
    )
    assert len(states(replica, "state = 'skipped'")) == 3  # not the owner: nothing recorded


@covers(c.ResultsRecorded)
def test_results_recorded_updates_rows_and_counters(replica: Replica) -> None:
    seed(replica, jobs=3)
    fire(replica, [[1, T0], [2, T0], [3, T0]])
    fire(replica, [[1, T0 + 60]])
    recorded = c.ResultsRecorded(
        now=NOW + 2,
        node_id=1,
        groups=[
            [T0, "success", 200, 1, 12, None, [2, 2, 3]],  # a repeated id counts once
            [T0, "failed", 503, 3, 900, "HTTP 503", [1]],  # job 1 has fired since
        ],
    )
    assert replica.ok(recorded) == {"recorded": 4}
    assert replica.rows(
        "SELECT job_id, slot, state, status_code, attempts, latency_ms, error, updated_at"
        " FROM executions ORDER BY job_id, slot"
    ) == [
        (1, T0, "failed", 503, 3, 900, "HTTP 503", NOW + 2),
        (1, T0 + 60, "dispatched", None, 0, None, None, NOW),
        (2, T0, "success", 200, 1, 12, None, NOW + 2),
        (3, T0, "success", 200, 1, 12, None, NOW + 2),
    ]
    # last_* follow the latest fired slot only; counters count every result.
    assert replica.rows(
        "SELECT id, success_count, failed_count, last_state, last_status_code, last_finished_at"
        " FROM jobs ORDER BY id"
    ) == [
        (1, 0, 1, "dispatched", None, NOW + 2),
        (2, 1, 0, "success", 200, NOW + 2),
        (3, 1, 0, "success", 200, NOW + 2),
    ]
    # Version-1 rows: applied one by one, so a repeated row counts twice.
    legacy = {
        "v": 1,
        "t": "ResultsRecorded",
        "a": {
            "now": NOW + 3,
            "node_id": 1,
            "results": [[1, T0 + 60, "success", 200, 1, 5, None]] * 2,
        },
    }
    assert replica.machine.apply(b"j" + orjson.dumps(legacy)) == {"ok": {"recorded": 2}}
    assert replica.one("SELECT success_count, last_state FROM jobs WHERE id = 1") == (2, "success")


@covers(c.ResultsRecorded, c.JobPaused, c.JobUpdated)
def test_results_recorded_pauses_after_consecutive_failures(replica: Replica) -> None:
    """Job 1 pauses after 3 failures in a row (a success in between starts
    over); job 2 (no policy) fails as often and keeps firing; a resume clears
    the count."""
    changes: list[tuple[str, Any]] = []
    replica.machine._on_change = lambda kind, detail: changes.append((kind, detail))
    seed(replica, jobs=0)
    replica.ok(c.JobsCreated(now=NOW, jobs=[job(policy={"pause_after_failures": 3}), job()]))

    def outcome(slot: int, state: str, error: str | None = None) -> None:
        fire(replica, [[1, slot], [2, slot]])
        code = 200 if state == "success" else 500
        replica.ok(
            c.ResultsRecorded(
                now=NOW + slot - T0, node_id=1, groups=[[slot, state, code, 1, 3, error, [1, 2]]]
            )
        )

    def counts() -> list[tuple[Any, ...]]:
        return replica.rows("SELECT id, paused, consecutive_failures FROM jobs ORDER BY id")

    outcome(T0, "failed", "HTTP 500")
    outcome(T0 + 60, "failed", "HTTP 500")
    assert counts() == [(1, 0, 2), (2, 0, 0)]
    outcome(T0 + 120, "success")
    assert counts() == [(1, 0, 0), (2, 0, 0)]
    changes.clear()
    for k in (3, 4):
        outcome(T0 + 60 * k, "failed", "HTTP 500")
    assert counts() == [(1, 0, 2), (2, 0, 0)]
    outcome(T0 + 300, "failed", "timeout after 2s")
    assert counts() == [(1, 1, 3), (2, 0, 0)]
    assert replica.one("SELECT status_note, updated_at FROM jobs WHERE id = 1") == (
        "paused after 3 consecutive failures (last: timeout after 2s)",
        NOW + 300,
    )
    assert ("jobs", [1]) in changes  # the owner hears of it and stops firing it
    assert fire(replica, [[1, T0 + 360], [2, T0 + 360]]) == [[2, T0 + 360]]
    # Results still in flight when it paused are recorded; the job stays paused.
    replica.ok(
        c.ResultsRecorded(
            now=NOW + 361, node_id=1, groups=[[T0 + 360, "failed", 500, 1, 3, "x", [1]]]
        )
    )
    assert counts()[0] == (1, 1, 4)
    replica.ok(c.JobPaused(now=NOW + 400, job_id=1, paused=False, note="fixed"))
    assert counts()[0] == (1, 0, 0)
    assert replica.one("SELECT status_note FROM jobs WHERE id = 1") == ("fixed",)
    # A new limit counts from when it is set; another policy's change keeps the count.
    outcome(T0 + 420, "failed", "HTTP 500")
    replica.ok(c.JobUpdated(now=NOW + 430, job_id=1, changes={"policy": {"overlap": "skip"}}))
    assert counts()[0] == (1, 0, 1)
    replica.ok(
        c.JobUpdated(now=NOW + 431, job_id=1, changes={"policy": {"pause_after_failures": 5}})
    )
    assert counts()[0] == (1, 0, 0)


# -- lost executions -----------------------------------------------------------------------


@covers(c.ExecutionsLost)
def test_executions_lost_marks_only_dispatched_runs(replica: Replica) -> None:
    seed(replica, jobs=4)
    fire(replica, [[1, T0], [2, T0], [3, T0]])
    settle(replica, [2], T0, NOW + 1)
    replica.ok(c.JobTriggered(now=NOW, job_id=4, slot=T0))
    lost = c.ExecutionsLost(
        now=NOW + 5, executions=[[1, T0], [2, T0], [4, T0], [3, T0 + 1], [9, 1]]
    )
    # The result counts what was asked, not what changed.
    assert replica.ok(lost) == {"lost": 5}
    assert replica.rows(
        "SELECT job_id, slot, state, updated_at FROM executions ORDER BY job_id, slot"
    ) == [
        (1, T0, "lost", NOW + 5),
        (2, T0, "success", NOW + 1),
        (3, T0, "dispatched", NOW),
        (4, T0, "pending", NOW),
    ]
    # Job counters are not touched: a lost run is neither success nor failure.
    assert replica.one("SELECT last_state, success_count, failed_count FROM jobs WHERE id = 1") == (
        "dispatched",
        0,
        0,
    )


@covers(c.NodeRunsLost)
def test_node_runs_lost_marks_the_nodes_dispatched_runs_but_those_it_keeps(
    replica: Replica,
) -> None:
    seed(replica, jobs=4)
    fire(replica, [[1, T0], [2, T0], [3, T0], [4, T0]])
    settle(replica, [2], T0, NOW + 1)
    restarted = c.NodeRunsLost(now=NOW + 5, node_id=1, keep=[[3, T0], [9, T0]])
    assert replica.ok(restarted) == {"lost": 2}
    assert replica.rows(
        "SELECT job_id, slot, state, updated_at FROM executions ORDER BY job_id, slot"
    ) == [
        (1, T0, "lost", NOW + 5),
        (2, T0, "success", NOW + 1),
        (3, T0, "dispatched", NOW),
        (4, T0, "lost", NOW + 5),
    ]
    # Another node's declaration, and the same one again, change nothing.
    assert replica.ok(c.NodeRunsLost(now=NOW + 6, node_id=2)) == {"lost": 0}
    assert replica.ok(dataclasses.replace(restarted, now=NOW + 7)) == {"lost": 0}
    assert states(replica, "state = 'lost'") == [(1, T0, "lost"), (4, T0, "lost")]
    # Job counters are not touched: a lost run is neither success nor failure.
    assert replica.one("SELECT last_state, success_count, failed_count FROM jobs WHERE id = 1") == (
        "dispatched",
        0,
        0,
    )


def test_a_skipped_result_is_neither_a_success_nor_a_failure(replica: Replica) -> None:
    seed(replica, jobs=2)
    fire(replica, [[1, T0], [2, T0]])
    settle(replica, [1], T0, NOW + 1, state="failed")
    replica.ok(
        c.ResultsRecorded(
            now=NOW + 2,
            node_id=1,
            groups=[[T0, "skipped", None, 0, 0, "job paused before its slot", [2]]],
        )
    )
    assert replica.rows(
        "SELECT id, last_state, success_count, failed_count FROM jobs ORDER BY id"
    ) == [(1, "failed", 0, 1), (2, "skipped", 0, 0)]
    assert replica.rows("SELECT job_id, state, error FROM executions ORDER BY job_id") == [
        (1, "failed", None),
        (2, "skipped", "job paused before its slot"),
    ]


@covers(c.ExecutionsRedispatched)
def test_executions_redispatched_once_and_only_to_the_current_owner(replica: Replica) -> None:
    seed(replica, jobs=3)
    fire(replica, [[1, T0], [2, T0], [3, T0]])
    replica.ok(c.ExecutionsLost(now=NOW + 5, executions=[[1, T0], [2, T0]]))
    # Node 2 does not own the buckets yet: nothing for it.
    assert replica.ok(
        c.ExecutionsRedispatched(now=NOW + 6, node_id=2, executions=[[1, T0], [2, T0]])
    ) == {"accepted": []}
    # Job 1's bucket moves to node 2, job 2's stays with node 1.
    owners = [1] * BUCKETS
    owners[bucket_of(1)] = 2
    replica.ok(c.AssignmentChanged(now=NOW + 7, epoch=2, owners=owners))
    both = [[1, T0], [2, T0], [3, T0]]  # job 3's run is still dispatched: not lost
    assert replica.ok(c.ExecutionsRedispatched(now=NOW + 8, node_id=1, executions=both)) == {
        "accepted": [[2, T0]]
    }
    assert replica.ok(c.ExecutionsRedispatched(now=NOW + 8, node_id=2, executions=both)) == {
        "accepted": [[1, T0]]
    }
    # Accepted once: a second takeover, by anyone, gets nothing.
    for node in (1, 2):
        assert replica.ok(c.ExecutionsRedispatched(now=NOW + 9, node_id=node, executions=both)) == {
            "accepted": []
        }
    assert replica.rows(
        "SELECT job_id, state, node_id, epoch, updated_at FROM executions ORDER BY job_id"
    ) == [
        (1, "dispatched", 2, 1, NOW + 8),
        (2, "dispatched", 1, 1, NOW + 8),
        (3, "dispatched", 1, 1, NOW),
    ]


# -- retention -----------------------------------------------------------------------------


def history_for_pruning(r: Replica) -> None:
    """Jobs 1..4, each fired at slots T0, T0+60, T0+120 (a minute apart, so
    created_at differs by slot) and settled, except job 4's last run, which
    stays dispatched. Execution ids 1..12 in slot order."""
    seed(r, jobs=4)
    for k in range(3):
        slot = T0 + 60 * k
        fire(r, [[j, slot] for j in (1, 2, 3, 4)], now=slot + 0.5)
        settle(
            r, [1, 2, 3] if k == 2 else [1, 2, 3, 4], slot, slot + 1, "failed" if k else "success"
        )


NO_CAP = 10**9


@covers(c.ExecutionsPruned)
def test_executions_pruned_global_cap_keeps_the_newest_rows(replica: Replica) -> None:
    history_for_pruning(replica)
    prune = c.ExecutionsPruned(
        now=NOW, keep_rows=5, before=0.0, per_job=NO_CAP, job_id_from=0, job_id_to=NO_CAP
    )
    assert replica.ok(prune) == {"deleted": 7}
    assert replica.rows("SELECT id FROM executions ORDER BY id") == [
        (8,),
        (9,),
        (10,),
        (11,),
        (12,),
    ]
    # Rows still dispatched are never dropped by the cap.
    replica.ok(dataclasses.replace(prune, keep_rows=0))
    assert states(replica) == [(4, T0 + 120, "dispatched")]


@covers(c.ExecutionsPruned)
def test_a_fair_prune_with_one_project_holding_jobs_keeps_the_newest_rows_as_before(
    replica: Replica,
) -> None:
    """Every row is that project's: the cap applies as in older entries,
    without counting by project."""
    history_for_pruning(replica)
    replica.ok(c.ProjectCreated(now=NOW, name="empty", description="", signing_secret="s"))
    prune = c.ExecutionsPruned(
        now=NOW, keep_rows=5, before=0.0, per_job=NO_CAP, job_id_from=0, job_id_to=NO_CAP, fair=True
    )
    assert replica.ok(prune) == {"deleted": 7}
    assert [i for (i,) in replica.rows("SELECT id FROM executions ORDER BY id")] == [
        8,
        9,
        10,
        11,
        12,
    ]


@covers(c.ExecutionsPruned)
def test_executions_pruned_by_age_spares_dispatched_runs(replica: Replica) -> None:
    history_for_pruning(replica)
    # Created at T0+0.5, T0+60.5, T0+120.5: "before" T0+60.5 drops only the first slot.
    prune = c.ExecutionsPruned(
        now=NOW, keep_rows=NO_CAP, before=T0 + 60.5, per_job=NO_CAP, job_id_from=0, job_id_to=0
    )
    assert replica.ok(prune) == {"deleted": 4}
    assert replica.rows("SELECT DISTINCT slot FROM executions ORDER BY slot") == [
        (T0 + 60,),
        (T0 + 120,),
    ]
    replica.ok(dataclasses.replace(prune, before=NOW + 10**6))
    assert states(replica) == [(4, T0 + 120, "dispatched")]


@covers(c.ExecutionsPruned)
def test_executions_pruned_per_job_within_the_job_id_range(replica: Replica) -> None:
    history_for_pruning(replica)
    prune = c.ExecutionsPruned(
        now=NOW, keep_rows=NO_CAP, before=0.0, per_job=1, job_id_from=2, job_id_to=3
    )
    assert replica.ok(prune) == {"deleted": 4}
    assert [(j, s - T0) for j, s, _ in states(replica)] == [
        (1, 0),
        (1, 60),
        (1, 120),
        (2, 120),  # jobs 2 and 3 (the range, both ends) keep their latest run only
        (3, 120),
        (4, 0),
        (4, 60),
        (4, 120),
    ]
    assert replica.ok(dataclasses.replace(prune, per_job=2, job_id_from=1, job_id_to=4)) == {
        "deleted": 2
    }
    assert [(j, s - T0) for j, s, _ in states(replica)] == [
        (1, 60),
        (1, 120),
        (2, 120),
        (3, 120),
        (4, 60),
        (4, 120),
    ]
    # Job summaries and counters survive their rows.
    assert replica.one(
        "SELECT fired_count, success_count, failed_count FROM jobs WHERE id = 2"
    ) == (
        3,
        1,
        2,
    )


WINDOW_PER_JOB = (
    "SELECT id FROM (SELECT id, row_number() OVER"
    f" (PARTITION BY job_id ORDER BY {RUN_SECOND_SQL} DESC, slot DESC) AS rn"
    " FROM executions WHERE job_id BETWEEN ? AND ? AND trigger IS NOT 'backfill') WHERE rn > ?"
)
"""The per-job rule of retention as older versions ran it: the reference."""


def test_the_per_job_rule_drops_the_rows_the_window_of_older_versions_dropped(
    tmp_path: Path,
) -> None:
    """Random histories (scheduled, missed, caught-up and backfilled slots,
    manual runs in seconds before, between and after them, rows inserted out
    of order): for every range and ``per_job``, the rows past each job's
    newest are exactly those of the window query, whose result every replica
    that applied older entries holds."""
    db = connect(tmp_path / "state.db", writer=True)
    rng = random.Random(11)
    rows = []
    for job_id in range(1, 41):
        seconds = rng.sample(range(T0, T0 + 400), rng.randrange(0, 25))
        for second in seconds:
            trigger = rng.choice([None, None, None, "catchup", "backfill"])
            rows.append((job_id, second, trigger))
        if job_id % 3 == 0:  # manual runs, several in some seconds
            for second in rng.sample(range(T0 - 50, T0 + 450), rng.randrange(1, 8)):
                for n in range(rng.randrange(1, 4)):
                    rows.append((job_id, manual_slot(second, n), "manual"))
    rng.shuffle(rows)  # row ids do not follow slots
    db.executemany(
        "INSERT INTO executions (job_id, project_id, slot, state, trigger, created_at,"
        " updated_at) VALUES (?, 1, ?, 'success', ?, 0, 0)",
        rows,
    )
    checked = 0
    for first, last in ((1, 40), (3, 3), (5, 17), (30, 99)):
        for per_job in (1, 2, 5, 12, 30):
            expected = sorted(r[0] for r in db.execute(WINDOW_PER_JOB, (first, last, per_job)))
            assert sorted(_past_per_job(db, first, last, per_job)) == expected, (
                first,
                last,
                per_job,
            )
            checked += len(expected)
    assert checked > 1_000  # the histories were long enough to drop rows
    db.close()


@covers(c.ExecutionsPruned)
def test_executions_pruned_keeps_unsent_backfill_and_counts_none_per_job(
    replica: Replica,
) -> None:
    seed(replica, jobs=1)
    assert fire(replica, [[1, T0 + 60], [1, T0 + 120]]) == [[1, T0 + 60], [1, T0 + 120]]
    settle(replica, [1], T0 + 60, NOW + 61)
    settle(replica, [1], T0 + 120, NOW + 121)
    old = [T0 - 60 * k for k in range(5, 0, -1)]  # older seconds than any scheduled run
    assert replica.ok(c.JobBackfilled(now=NOW + 130, job_id=1, slots=old))["queued"] == 5
    replica.ok(c.ExecutionsRedispatched(now=NOW + 131, node_id=1, executions=[[1, old[0]]]))
    settle(replica, [1], old[0], NOW + 132)  # sent and settled
    per_job = c.ExecutionsPruned(
        now=NOW + 200, keep_rows=NO_CAP, before=0.0, per_job=1, job_id_from=1, job_id_to=1
    )
    replica.ok(per_job)
    # The per-job rule keeps the newest scheduled run, and neither counts nor
    # drops the backfilled rows (the record that their slots ran).
    assert states(replica) == [
        (1, old[0], "success"),
        *[(1, s, "pending") for s in old[1:]],
        (1, T0 + 120, "success"),
    ]
    # The global cap and the age rule drop everything they may: not an unsent backfill.
    replica.ok(dataclasses.replace(per_job, keep_rows=0, before=NOW + 1000))
    assert states(replica) == [(1, s, "pending") for s in old[1:]]


# -- cluster -------------------------------------------------------------------------------


@covers(c.AssignmentChanged)
def test_assignment_changed_needs_a_newer_epoch_and_every_bucket(
    replica: Replica, tmp_path: Path
) -> None:
    owners = [1 + b % 3 for b in range(BUCKETS)]
    assert replica.ok(c.AssignmentChanged(now=NOW, epoch=3, owners=owners)) == {"epoch": 3}
    assert (replica.machine.epoch, replica.machine.owners) == (3, owners)
    meta = dict(replica.rows("SELECT key, value FROM meta"))
    assert meta == {"epoch": "3", "owners": orjson.dumps(owners).decode()}
    before = replica.dump()
    for epoch in (3, 2):
        replica.refused(c.AssignmentChanged(now=NOW, epoch=epoch, owners=[9] * BUCKETS), "conflict")
    replica.refused(
        c.AssignmentChanged(now=NOW, epoch=4, owners=[9] * (BUCKETS - 1)), "validation_failed"
    )
    assert replica.dump() == before
    assert (replica.machine.epoch, replica.machine.owners) == (3, owners)
    # A machine opened on the same database (a restart) reads the assignment back.
    again = StateMachine(tmp_path / "state.db")
    try:
        assert (again.epoch, again.owners) == (3, owners)
    finally:
        again.close()


@covers(c.MemberJoined, c.MemberLeft)
def test_members_join_rejoin_and_leave(replica: Replica) -> None:
    joined = c.MemberJoined(now=NOW, node_id=2, address="http://b:9090", raft_address="b:7070")
    assert replica.ok(joined) == {"node_id": 2}
    replica.ok(c.MemberJoined(now=NOW, node_id=1, address="http://a:9090", raft_address="a:7070"))
    # Joining again updates the addresses and keeps the first join time.
    replica.ok(
        dataclasses.replace(joined, now=NOW + 9, address="http://b2:9090", raft_address="b2:1")
    )
    assert replica.rows("SELECT * FROM members ORDER BY node_id") == [
        (1, "http://a:9090", "a:7070", NOW),
        (2, "http://b2:9090", "b2:1", NOW),
    ]
    assert replica.ok(c.MemberLeft(now=NOW + 10, node_id=2)) == {"node_id": 2}
    assert replica.ok(c.MemberLeft(now=NOW + 11, node_id=5)) == {"node_id": 5}  # unknown: no-op
    assert replica.rows("SELECT node_id FROM members") == [(1,)]


def test_a_remembered_departure_is_never_undone_by_an_automatic_join(replica: Replica) -> None:
    """The leader registers configured replicas raft knows; between a removal's
    MemberLeft and raft dropping the node it still knows the leaving one."""
    joined = c.MemberJoined(now=NOW, node_id=2, address="http://b:9090", raft_address="b:7070")
    replica.ok(joined)
    replica.ok(c.MemberLeft(now=NOW + 1, node_id=2, remember=True))
    assert replica.rows("SELECT * FROM departed_members") == [(2, NOW + 1)]
    ignored = replica.ok(dataclasses.replace(joined, now=NOW + 2, automatic=True))
    assert ignored == {"node_id": 2, "ignored": "departed"}
    assert replica.rows("SELECT node_id FROM members") == []
    # An operator adding it back is obeyed, and it is no longer departed.
    assert replica.ok(dataclasses.replace(joined, now=NOW + 3)) == {"node_id": 2}
    assert replica.rows("SELECT node_id FROM members") == [(2,)]
    assert replica.rows("SELECT * FROM departed_members") == []


def test_an_older_member_left_records_no_departure(replica: Replica) -> None:
    replica.ok(c.MemberJoined(now=NOW, node_id=2, address="http://b:9090", raft_address="b:7070"))
    replica.ok(c.MemberLeft(now=NOW + 1, node_id=2))
    assert replica.rows("SELECT * FROM departed_members") == []


def test_listeners_hear_what_changed_after_commit_only(tmp_path: Path) -> None:
    heard: list[tuple[str, Any]] = []

    def hear(kind: str, detail: Any) -> None:
        heard.append((kind, list(detail.ids()) if kind == "jobs_created" else detail))

    replica = Replica(tmp_path / "l.db", on_change=hear)
    try:
        seed(replica, jobs=2)
        replica.ok(c.JobUpdated(now=NOW, job_id=2, changes={"spec": "@every 2m"}))
        replica.ok(c.MemberJoined(now=NOW, node_id=3, address="a", raft_address="r"))
        replica.ok(c.MemberLeft(now=NOW, node_id=3))
        replica.refused(c.JobUpdated(now=NOW, job_id=7, changes={}), "not_found")
        replica.refused(c.AssignmentChanged(now=NOW, epoch=1, owners=[1] * BUCKETS), "conflict")
    finally:
        replica.close()
    assert heard == [
        ("assignment", 1),
        ("jobs_created", [1, 2]),
        ("jobs", [2]),
        ("members", 3),
        ("members", 3),
    ]


# -- manual runs ---------------------------------------------------------------------------


MANUAL_T0 = manual_slot(T0, 0)
"""The key of the first manual run of a job in second ``T0``."""


@covers(c.JobTriggered, c.SlotsFired, c.ExecutionsRedispatched)
def test_a_run_now_and_a_scheduled_fire_of_one_slot_are_sent_once(replica: Replica) -> None:
    seed(replica, jobs=1)
    triggered = replica.ok(c.JobTriggered(now=NOW + 0.2, job_id=1, slot=T0, manual=True))
    assert triggered == {
        "job_id": 1,
        "slot": T0,
        "execution_id": f"1-{T0}-m0",
        "trigger": "manual",
    }
    sent = fire(replica, [[1, T0]], now=NOW + 0.3)
    pending = [[1, T0], [1, MANUAL_T0]]
    sent += replica.ok(c.ExecutionsRedispatched(now=NOW + 0.5, node_id=1, executions=pending))[
        "accepted"
    ]
    # The scheduled slot once (by SlotsFired), the manual run once (by its owner).
    assert sent == [[1, T0], [1, MANUAL_T0]]
    assert replica.rows(
        "SELECT slot, state, trigger FROM executions WHERE job_id = 1 ORDER BY id"
    ) == [(MANUAL_T0, "dispatched", "manual"), (T0, "dispatched", None)]
    assert {execution_id(1, slot) for _, slot in sent} == {f"1-{T0}", f"1-{T0}-m0"}


@covers(c.JobTriggered)
def test_manual_runs_of_one_second_take_the_next_key_and_keep_the_schedule(
    replica: Replica,
) -> None:
    seed(replica, jobs=2)
    ids = [
        replica.ok(c.JobTriggered(now=NOW + 0.1 * n, job_id=2, slot=T0, manual=True))[
            "execution_id"
        ]
        for n in range(3)
    ]
    assert ids == [f"2-{T0}-m0", f"2-{T0}-m1", f"2-{T0}-m2"]
    # Another second, another job: their own first keys.
    assert (
        replica.ok(c.JobTriggered(now=NOW + 1, job_id=2, slot=T0 + 1, manual=True))["execution_id"]
        == f"2-{T0 + 1}-m0"
    )
    assert (
        replica.ok(c.JobTriggered(now=NOW, job_id=1, slot=T0, manual=True))["execution_id"]
        == f"1-{T0}-m0"
    )
    assert replica.rows(
        "SELECT job_id, slot, state, trigger FROM executions WHERE job_id = 2 ORDER BY id"
    ) == [
        (2, manual_slot(T0, 0), "pending", "manual"),
        (2, manual_slot(T0, 1), "pending", "manual"),
        (2, manual_slot(T0, 2), "pending", "manual"),
        (2, manual_slot(T0 + 1, 0), "pending", "manual"),
    ]
    # The schedule still fires that second, and its last fired slot is its own.
    assert fire(replica, [[2, T0]]) == [[2, T0]]
    assert replica.one("SELECT last_fired_slot, fired_count FROM jobs WHERE id = 2") == (T0, 1)
    replica.refused(c.JobTriggered(now=NOW, job_id=9, slot=T0, manual=True), "not_found")


@covers(c.JobTriggered)
def test_a_second_holds_at_most_its_manual_keys(replica: Replica) -> None:
    seed(replica, jobs=1)
    replica.machine._conn.execute(  # the second already full, as if run-now were spammed
        "INSERT INTO executions (job_id, project_id, slot, state, created_at, updated_at,"
        " trigger) VALUES (1, 1, ?, 'success', ?, ?, 'manual')",
        (manual_slot(T0, MANUAL_PER_SECOND - 1), NOW, NOW),
    )
    err = replica.refused(c.JobTriggered(now=NOW, job_id=1, slot=T0, manual=True), "conflict")
    assert err["message"] == f"job 1 already has {MANUAL_PER_SECOND} manual runs in second {T0}"
    assert replica.ok(c.JobTriggered(now=NOW, job_id=1, slot=T0 + 1, manual=True))["slot"] == T0 + 1


@covers(c.JobTriggered, c.ResultsRecorded, c.ExecutionsPruned)
def test_a_manual_run_is_settled_and_kept_by_its_second(replica: Replica) -> None:
    seed(replica, jobs=1)
    replica.ok(c.JobTriggered(now=NOW + 0.2, job_id=1, slot=T0 + 30, manual=True))
    replica.ok(
        c.ExecutionsRedispatched(now=NOW + 1, node_id=1, executions=[[1, manual_slot(T0 + 30, 0)]])
    )
    settle(replica, [1], manual_slot(T0 + 30, 0), NOW + 2)
    for slot in (T0, T0 + 60):
        fire(replica, [[1, slot]])
        settle(replica, [1], slot, NOW + 2, "failed")
    assert replica.rows("SELECT slot, state FROM executions ORDER BY id") == [
        (manual_slot(T0 + 30, 0), "success"),
        (T0, "failed"),
        (T0 + 60, "failed"),
    ]
    # The job's last state is its schedule's; the counts hold every run.
    assert replica.one("SELECT last_state, success_count, failed_count FROM jobs WHERE id = 1") == (
        "failed",
        1,
        2,
    )
    # Keeping the two latest per job keeps the manual run (its second is T0 + 30).
    replica.ok(
        c.ExecutionsPruned(
            now=NOW + 3, keep_rows=1000, before=0, per_job=2, job_id_from=1, job_id_to=1
        )
    )
    assert [slot for (slot,) in replica.rows("SELECT slot FROM executions ORDER BY id")] == [
        manual_slot(T0 + 30, 0),
        T0 + 60,
    ]


# -- every type: a handler and a test ------------------------------------------------------


def zero_value(hint: Any) -> Any:
    origin = typing.get_origin(hint) or hint
    if origin is list:
        return []
    if origin is dict:
        return {}
    if origin in (types.UnionType, typing.Union):
        return None
    if origin in (bool, int, float, str):
        return origin()
    raise TypeError(f"no zero value for {hint!r}")


def zero_instance(cls: type[c.Command]) -> c.Command:
    hints = typing.get_type_hints(cls)
    required = {
        f.name: zero_value(hints[f.name])
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return cls(**required)


@pytest.mark.parametrize("name", sorted(c.COMMAND_TYPES))
def test_every_command_type_has_a_handler(name: str, tmp_path: Path) -> None:
    """A zero-valued command of each type decodes to itself and applies to a
    fresh database as a value: accepted, or refused with a domain error (not
    ``internal_error``); never an exception out of ``apply``."""
    command = zero_instance(c.COMMAND_TYPES[name])
    assert c.decode(c.encode(command)) == command
    machine = StateMachine(tmp_path / "zero.db")
    try:
        result = machine.apply(c.encode(command))
    finally:
        machine.close()
    assert set(result) in ({"ok"}, {"error"}), result
    assert result.get("error", {}).get("code") != "internal_error", result


def test_every_command_type_has_a_test() -> None:
    missing = sorted(set(c.COMMAND_TYPES) - set(COVERED))
    unknown = sorted(set(COVERED) - set(c.COMMAND_TYPES))
    assert not missing, f"command types without a @covers test in {__name__}: {missing}"
    assert not unknown, f"@covers names types no longer registered: {unknown}"


@covers(c.ExecutionsPruned)
def test_executions_pruned_fairly_trims_the_project_holding_the_most_rows_first(
    replica: Replica,
) -> None:
    """Over the cap, a fair prune trims the project holding the most rows down
    to the level every smaller project stays under: project 2's two runs,
    older than every run of project 1, stay; project 1 keeps its newest 4 of
    10 (cap 6). An older entry (no ``fair``) drops the oldest of any project."""
    seed(replica, jobs=1)
    replica.ok(c.ProjectCreated(now=NOW, name="q", description="", signing_secret="s"))
    replica.ok(c.JobsCreated(now=NOW, jobs=[job(project_id=2)]))
    for k in range(2):
        fire(replica, [[2, T0 + 60 * k]], now=T0 + 60 * k)
        settle(replica, [2], T0 + 60 * k, T0 + 60 * k + 1)
    for k in range(2, 12):
        fire(replica, [[1, T0 + 60 * k]], now=T0 + 60 * k)
        settle(replica, [1], T0 + 60 * k, T0 + 60 * k + 1)
    prune = c.ExecutionsPruned(
        now=NOW, keep_rows=6, before=0.0, per_job=NO_CAP, job_id_from=0, job_id_to=NO_CAP
    )
    assert replica.ok(dataclasses.replace(prune, fair=True)) == {"deleted": 6}
    assert [(j, (s - T0) // 60) for j, s, _ in states(replica)] == [
        (1, 8),
        (1, 9),
        (1, 10),
        (1, 11),
        (2, 0),
        (2, 1),
    ]
    assert replica.ok(dataclasses.replace(prune, keep_rows=4)) == {"deleted": 2}
    assert [j for j, _, _ in states(replica)] == [1, 1, 1, 1]  # project 2's, the oldest


@given(
    counts=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=8),
    cap=st.integers(min_value=0, max_value=400),
)
def test_the_fair_level_is_the_highest_that_keeps_the_projects_within_the_cap(
    counts: list[int], cap: int
) -> None:
    level = fair_level(counts, cap)
    kept = sum(min(n, level) for n in counts)
    if sum(counts) > cap:
        assert kept <= cap
        assert sum(min(n, level + 1) for n in counts) > cap  # one more would not fit
