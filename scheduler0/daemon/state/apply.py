"""What a command handler gets and how handlers are registered.

A handler is ``handler(ctx, command) -> result`` for one command type,
registered with ``@handles(CommandType)`` in a module of ``state/handlers/``
(one module per domain). The rules every handler keeps (the raft log depends on
them) are ``StateMachine``'s: deterministic (only the command and the database,
never the clock, randomness or node-local settings), one transaction per
command opened and closed by the state machine, a domain error raised as a
``Scheduler0Error`` (the transaction is rolled back and the error returned as a
value), small results.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import orjson

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.schema import BUCKETS, bucket_of, encode_policy
from scheduler0.errors import NotFound

C = TypeVar("C", bound=c.Command)
Handler = Callable[["ApplyContext", Any], Any]


class Change(enum.StrEnum):
    """What an applied command changed, announced to the node after commit."""

    JOBS = "jobs"
    """Detail: the ids of the jobs changed or deleted (created by other than
    ``JobsCreated``)."""
    JOBS_CREATED = "jobs_created"
    """Detail: a ``CreatedJobs``, the jobs a ``JobsCreated`` inserted."""
    ASSIGNMENT = "assignment"
    """Detail: the new epoch."""
    MEMBERS = "members"
    """Detail: the node id that joined or left."""
    RESET = "reset"
    """The whole state was replaced from a snapshot. Detail: None."""
    HALTED = "halted"
    """This replica stopped applying (its environment failed). Detail: the reason."""


class CreatedJobs(NamedTuple):
    """The jobs one ``JobsCreated`` inserted, with ids from ``first`` in the
    order of ``jobs`` (the command's items). Their owner loads them from here,
    not by reading back the rows just written: at a million jobs that read
    was half of a node's event-loop time while jobs were being created."""

    first: int
    jobs: list[dict[str, Any]]

    def ids(self) -> range:
        return range(self.first, self.first + len(self.jobs))

    def scheduling_rows(self, keep: Callable[[int], bool]) -> list[dict[str, Any]]:
        """The rows ``Queries.jobs_for_scheduling`` reads for the jobs whose id
        ``keep`` accepts, as they are right after the insert (the unit tests
        compare the two)."""
        rows = []
        for job_id, job in enumerate(self.jobs, self.first):
            if not keep(job_id):
                continue
            policy = job.get("policy")
            rows.append(
                {
                    "id": job_id,
                    "spec": job["spec"],
                    "timezone": job["timezone"],
                    "anchor": job["anchor"],
                    "not_before": job["anchor"],
                    "last_fired_slot": None,
                    "paused": 1 if job.get("paused") else 0,
                    "bucket": bucket_of(job_id),
                    "next_run": job.get("next_run"),
                    "revision": 0,
                    "policy": encode_policy(policy) if policy else None,
                    "fired_count": 0,
                }
            )
        return rows


HANDLERS: dict[type[c.Command], Handler] = {}
"""The handler of every command type; filled by ``@handles``."""


@dataclass
class Assignment:
    """The replicated bucket assignment, as applied: bucket ``i`` is owned by
    node ``owners[i]`` since ``epoch``. Changed only by ``AssignmentChanged``."""

    epoch: int = 0
    owners: list[int] = field(default_factory=lambda: [0] * BUCKETS)


@dataclass
class ApplyContext:
    """One command's apply: the open transaction, the assignment, and the
    changes to announce once it has committed."""

    db: sqlite3.Connection
    assignment: Assignment
    changes: list[tuple[Change, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    """Seconds the handler and its commit took."""

    def changed(self, kind: Change, detail: Any) -> None:
        """Announce ``(kind, detail)`` to the node once the command has committed."""
        self.changes.append((kind, detail))


def handles(command_type: type[C]) -> Callable[[Callable[[ApplyContext, C], Any]], Any]:
    def register(fn: Callable[[ApplyContext, C], Any]) -> Callable[[ApplyContext, C], Any]:
        if command_type in HANDLERS:
            raise TypeError(f"two handlers for {command_type.type_name}")
        HANDLERS[command_type] = fn
        return fn

    return register


@handles(c.Noop)
def noop(ctx: ApplyContext, cmd: c.Noop) -> None:
    return None


def require(db: sqlite3.Connection, table: str, row_id: int, noun: str) -> None:
    if not db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone():
        raise NotFound(f"no {noun} with id {row_id}")


def json_ids(ids: list[int]) -> str:
    return orjson.dumps(ids).decode()
