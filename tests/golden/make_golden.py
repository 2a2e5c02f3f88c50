"""Regenerate the golden journals and their dumps: ``python -m tests.golden.make_golden``.

The checked-in files are the contract, not this script: the test replays the
journals and compares with the checked dumps, and never calls this. Rewriting
a journal or a dump is a change of what old log entries mean; review the diff
(``git diff tests/golden``) as such. A new version of the commands gets a new
journal (``v3.journal``); the old ones stay as they are.

``v1.journal`` holds entries exactly as version-1 nodes wrote them (``"v": 1``,
every field of the version-1 dataclasses, ``ResultsRecorded`` with per-fire
``results`` rows; its last nodes, from 4f39fa8 to 456051c, proposed ``groups``
under ``"v": 1`` instead, and one such entry is included). ``v2.journal`` holds
every command type of version 2 at least once. Both include a zlib-framed
entry (a ``JobsCreated`` above 4 KiB) and refused commands (a refusal is a
result too, and must stay one).

When ``v1.journal`` was made, its entries other than the ``groups`` one were
checked against the version-1 code of c76916f (the last before apply was
grouped): that code's ``encode`` writes them byte for byte, and its machine
replaying them gives the same results and tables as ``v1.dump.json``.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.schema import BUCKETS, bucket_of
from tests.golden.journal import HERE, frame, render, replay, unframe, write_journal

V1_ONLY_LACKS = {"ResultsRecorded": ("groups",)}
"""Fields version 1 did not have (everything else is unchanged since version 1)."""


def args_of(command: c.Command) -> dict[str, Any]:
    return {f.name: getattr(command, f.name) for f in fields(command)}


def v1(command: c.Command) -> bytes:
    lacks = V1_ONLY_LACKS.get(command.type_name, ())
    return frame(
        1, command.type_name, {k: v for k, v in args_of(command).items() if k not in lacks}
    )


def v2(command: c.Command) -> bytes:
    payload = frame(2, command.type_name, args_of(command))
    if c.VERSION == 2:  # while version 2 is current, this is exactly what nodes propose
        assert payload == c.encode(command), command.type_name
    return payload


def jobs(t: int, count: int) -> list[dict[str, Any]]:
    """``count`` jobs of projects 1 and 2, interleaved (1, 2, 2, 1, 1, 2, ...)."""
    return [
        {
            "project_id": 1 + (j // 2) % 2,
            "spec": "@every 1m",
            "timezone": "UTC" if j % 3 else "Europe/Paris",
            "data": None if j % 4 == 0 else f'{{"job":{j}}}',
            "callback_url": f"http://receiver.test/hooks/{j:02d}",
            "execution_type": "http",
            "anchor": t,
        }
        for j in range(1, count + 1)
    ]


def split_owners() -> list[int]:
    """Node 1 owns the lower half of the buckets, node 2 the upper half."""
    return [1 + 2 * b // BUCKETS for b in range(BUCKETS)]


def owned(node: int, ids: range) -> list[int]:
    return [j for j in ids if split_owners()[bucket_of(j)] == node]


# Who owns which of the first jobs under ``split_owners`` (the entries below name them).
assert owned(1, range(1, 27)) == [1, 3, 5, 8, 10, 12, 13, 15, 17, 19, 20, 22, 24]
assert owned(2, range(1, 27)) == [2, 4, 6, 7, 9, 11, 14, 16, 18, 21, 23, 25, 26]


def v1_journal() -> list[bytes]:
    t = 1_700_000_000
    node1, node2 = owned(1, range(1, 13)), owned(2, range(1, 13))
    entries = [
        v1(c.MemberJoined(now=t, node_id=1, address="http://n1:9090", raft_address="n1:7070")),
        v1(c.MemberJoined(now=t, node_id=2, address="http://n2:9090", raft_address="n2:7070")),
        v1(c.AssignmentChanged(now=t + 1, epoch=1, owners=split_owners())),
        v1(c.ProjectCreated(now=t + 2, name="alpha", description="first", signing_secret="sec-a")),
        v1(c.ProjectCreated(now=t + 2, name="beta", description="", signing_secret="sec-b")),
        v1(c.ProjectCreated(now=t + 2, name="alpha", description="", signing_secret="x")),
        v1(c.ProjectUpdated(now=t + 3, project_id=2, description="second")),
        v1(c.CredentialCreated(now=t + 3, api_key="key-1", secret_hash="hash-1", description="ci")),
        v1(c.CredentialCreated(now=t + 3, api_key="key-2", secret_hash="hash-2")),
        v1(c.CredentialArchived(now=t + 4, credential_id=1)),
        v1(c.CredentialDeleted(now=t + 4, credential_id=2)),
        v1(c.JobsCreated(now=t + 5, jobs=jobs(t, 26))),
        v1(c.JobUpdated(now=t + 6, job_id=3, changes={"spec": "@every 2m", "not_before": t + 120})),
        v1(c.JobUpdated(now=t + 6, job_id=99, changes={"spec": "@every 2m"})),
        v1(c.JobPaused(now=t + 6, job_id=8, paused=True)),
        # Node 1's tick: job 2 is node 2's, job 8 is paused; job 1 had missed slots.
        v1(
            c.SlotsFired(
                now=t + 61,
                node_id=1,
                epoch=1,
                fires=[[j, t + 60] for j in [*node1, 2]],
                missed=[[1, [t - 60, t], 3]],
            )
        ),
        v1(c.SlotsFired(now=t + 61.5, node_id=2, epoch=1, fires=[[j, t + 60] for j in node2])),
        v1(c.SlotsFired(now=t + 62, node_id=1, epoch=1, fires=[[1, t + 60]])),  # again: refused
        v1(
            c.ResultsRecorded(
                now=t + 63,
                node_id=1,
                results=[
                    [1, t + 60, "success", 200, 1, 15, None],
                    [3, t + 60, "failed", 500, 3, 120, "HTTP 500"],
                    [3, t + 60, "success", 201, 4, 30, None],  # the later row wins; both count
                    [5, t + 60, "success", 200, 1, 9, None],
                    [5, t + 60, "success", 200, 1, 9, None],  # a repeated row counts twice
                    [10, t + 60, "failed", None, 3, 10000, "timeout"],
                    [1, t, "success", 200, 1, 1, None],  # a missed slot's row, not the last
                ],
            )
        ),
        v1(
            c.ResultsRecorded(
                now=t + 64,
                node_id=2,
                results=[[j, t + 60, "success", 204, 1, 7, None] for j in (2, 4, 6, 7)],
            )
        ),
        v1(c.JobTriggered(now=t + 70.5, job_id=12, slot=t + 70)),
        v1(c.JobTriggered(now=t + 70.9, job_id=12, slot=t + 70)),
        # Node 2 dies: its dispatched runs are lost; job 6's is settled already.
        v1(c.ExecutionsLost(now=t + 80, executions=[[9, t + 60], [11, t + 60], [6, t + 60]])),
        v1(c.MemberLeft(now=t + 81, node_id=2)),
        v1(c.AssignmentChanged(now=t + 82, epoch=2, owners=[1] * BUCKETS)),
        v1(c.AssignmentChanged(now=t + 82, epoch=2, owners=[2] * BUCKETS)),
        v1(
            c.ExecutionsRedispatched(
                now=t + 83,
                node_id=1,
                executions=[[9, t + 60], [11, t + 60], [12, t + 70], [7, t + 60]],
            )
        ),
        v1(
            c.ExecutionsRedispatched(
                now=t + 84, node_id=1, executions=[[9, t + 60], [11, t + 60], [12, t + 70]]
            )
        ),
        # As nodes from 4f39fa8 to 456051c wrote it: groups, still "v": 1.
        frame(
            1,
            "ResultsRecorded",
            {
                "now": t + 90,
                "node_id": 1,
                "results": [],
                "groups": [
                    [t + 60, "success", 200, 2, 40, None, [9, 11]],
                    [t + 70, "success", 202, 1, 5, None, [12]],
                    [t + 60, "failed", 410, 1, 3, "HTTP 410", [13]],  # job 13 never fired
                ],
            },
        ),
        v1(c.JobPaused(now=t + 100.9, job_id=8, paused=False)),
        v1(c.JobDeleted(now=t + 101, job_id=6)),
        v1(c.ProjectCreated(now=t + 102, name="gamma", description="", signing_secret="sec-c")),
        v1(c.ProjectDeleted(now=t + 103, project_id=3)),
        v1(c.ProjectDeleted(now=t + 103, project_id=1)),
        v1(
            c.SlotsFired(
                now=t + 121, node_id=1, epoch=2, fires=[[j, t + 120] for j in (1, 2, 3, 4, 5)]
            )
        ),
        v1(
            c.ExecutionsPruned(
                now=t + 130,
                keep_rows=24,
                before=t + 61.2,
                per_job=1,
                job_id_from=1,
                job_id_to=2,
            )
        ),
        v1(c.Noop(now=t + 140)),
    ]
    assert all(unframe(p)["v"] == 1 for p in entries)
    return entries


def v2_journal() -> list[bytes]:
    t = 1_800_000_000
    many = list(range(1, 21))
    entries = [
        v2(c.Noop()),
        v2(c.MemberJoined(now=t, node_id=1, address="http://n1:9090", raft_address="n1:7070")),
        v2(c.AssignmentChanged(now=t, epoch=1, owners=[1] * BUCKETS)),
        v2(c.AssignmentChanged(now=t, epoch=2, owners=[1] * (BUCKETS - 1))),
        v2(c.ProjectCreated(now=t + 1, name="alpha", description="", signing_secret="sec-a")),
        v2(c.ProjectCreated(now=t + 1, name="beta", description="b", signing_secret="sec-b")),
        v2(c.ProjectUpdated(now=t + 2, project_id=1, name="alpha2", description="renamed")),
        v2(c.ProjectUpdated(now=t + 2, project_id=2, name="alpha2")),
        v2(c.ProjectUpdated(now=t + 2, project_id=7, description="x")),
        v2(c.CredentialCreated(now=t + 3, api_key="key-1", secret_hash="hash-1")),
        v2(c.CredentialCreated(now=t + 3, api_key="key-2", secret_hash="hash-2", description="d")),
        v2(c.CredentialArchived(now=t + 4, credential_id=2)),
        v2(c.CredentialArchived(now=t + 5, credential_id=2, archived=False)),
        v2(c.CredentialArchived(now=t + 5, credential_id=9)),
        v2(c.CredentialDeleted(now=t + 6, credential_id=1)),
        v2(c.CredentialDeleted(now=t + 6, credential_id=1)),
        v2(c.JobsCreated(now=t + 7, jobs=jobs(t, 26))),
        v2(c.JobsCreated(now=t + 7, jobs=[{**jobs(t, 1)[0], "project_id": 5}])),
        v2(
            c.JobUpdated(
                now=t + 8,
                job_id=21,
                changes={"timezone": "Asia/Tokyo", "data": '"d"', "paused": 1, "bucket": 0},
            )
        ),
        v2(c.JobPaused(now=t + 8, job_id=22, paused=True)),
        # One node owns everything: 20 fires alternating projects (more than 16
        # runs: one statement), then a short tick (a statement per run).
        v2(
            c.SlotsFired(
                now=t + 60.1,
                node_id=1,
                epoch=1,
                fires=[[j, t + 60] for j in many] + [[22, t + 60]],
                missed=[[23, [t, t + 30], 0], [24, [t], 5]],
            )
        ),
        v2(c.SlotsFired(now=t + 60.2, node_id=1, epoch=1, fires=[[23, t + 60], [25, t + 60]])),
        v2(
            c.ResultsRecorded(
                now=t + 61,
                node_id=1,
                groups=[
                    [t + 60, "success", 200, 1, 12, None, [1, 2, 3, 4, 5, 6, 7, 8, 8]],
                    [t + 60, "failed", 500, 3, 90, "HTTP 500", [9, 10]],
                    [t + 60, "failed", None, 3, 10000, "timeout", [11]],
                ],
            )
        ),
        v2(c.JobTriggered(now=t + 62.4, job_id=2, slot=t + 62)),
        v2(c.JobTriggered(now=t + 62.6, job_id=2, slot=t + 62)),
        v2(c.JobTriggered(now=t + 62.6, job_id=77, slot=t + 62)),
        v2(c.MemberJoined(now=t + 63, node_id=2, address="http://n2:9090", raft_address="n2:7070")),
        v2(
            c.MemberJoined(now=t + 64, node_id=2, address="http://n2b:9090", raft_address="n2:7171")
        ),
        v2(c.AssignmentChanged(now=t + 65, epoch=2, owners=split_owners())),
        v2(c.ExecutionsLost(now=t + 66, executions=[[j, t + 60] for j in range(12, 21)])),
        v2(
            c.ExecutionsRedispatched(
                now=t + 67, node_id=2, executions=[[j, t + 60] for j in range(12, 21)]
            )
        ),
        v2(
            c.ExecutionsRedispatched(
                now=t + 67.5,
                node_id=1,
                executions=[[j, t + 60] for j in range(12, 21)] + [[2, t + 62]],
            )
        ),
        v2(c.ExecutionsRedispatched(now=t + 68, node_id=2, executions=[[2, t + 62], [12, t + 60]])),
        v2(c.ExecutionsRedispatched(now=t + 68, node_id=2, executions=[[2, t + 62]])),
        v2(
            c.ResultsRecorded(
                now=t + 69,
                node_id=1,
                groups=[[t + 60, "success", 200, 2, 30, None, [12, 14, 16, 18, 20, 15]]],
            )
        ),
        v2(c.SlotsFired(now=t + 120.3, node_id=2, epoch=2, fires=[[j, t + 120] for j in many])),
        v2(c.SlotsFired(now=t + 120.4, node_id=1, epoch=1, fires=[[j, t + 120] for j in many])),
        v2(
            c.ResultsRecorded(
                now=t + 121, node_id=2, groups=[[t + 120, "success", 200, 1, 4, None, [2, 4, 6]]]
            )
        ),
        v2(c.JobDeleted(now=t + 130, job_id=26)),
        v2(c.JobDeleted(now=t + 130, job_id=26)),
        v2(c.JobsCreated(now=t + 131, jobs=jobs(t, 1))),
        v2(c.JobPaused(now=t + 140.5, job_id=22, paused=False)),
        v2(c.MemberLeft(now=t + 150, node_id=2)),
        v2(c.ProjectCreated(now=t + 151, name="gamma", description="", signing_secret="sec-c")),
        v2(c.ProjectDeleted(now=t + 152, project_id=3)),
        v2(c.ProjectDeleted(now=t + 152, project_id=2)),
        v2(
            c.ExecutionsPruned(
                now=t + 160,
                keep_rows=40,
                before=t + 60.15,
                per_job=1,
                job_id_from=1,
                job_id_to=3,
            )
        ),
        v2(c.Noop(now=t + 170)),
    ]
    types = {unframe(p)["t"] for p in entries}
    assert types == set(c.COMMAND_TYPES), set(c.COMMAND_TYPES) - types
    assert all(unframe(p)["v"] == 2 for p in entries)
    return entries


def v3(command: c.Command) -> bytes:
    payload = frame(3, command.type_name, args_of(command))
    if c.VERSION == 3:  # while version 3 is current, this is exactly what nodes propose
        assert payload == c.encode(command), command.type_name
    return payload


def v3_journal() -> list[bytes]:
    """Every command type of version 3, and the kept next run: set by a
    creation, a tick (fires and missed slots), a change of schedule (a new
    revision) and a resume; unknown (NULL) after a tick proposed from an older
    revision of the job; keyed creations (idempotency keys)."""
    t = 1_900_000_000
    many = list(range(1, 21))
    created = [{**job, "next_run": t + 60} for job in jobs(t, 26)]
    entries = [
        v3(c.Noop()),
        v3(c.MemberJoined(now=t, node_id=1, address="http://n1:9090", raft_address="n1:7070")),
        v3(c.AssignmentChanged(now=t, epoch=1, owners=[1] * BUCKETS)),
        v3(c.ProjectCreated(now=t + 1, name="alpha", description="", signing_secret="sec-a")),
        v3(c.ProjectCreated(now=t + 1, name="beta", description="b", signing_secret="sec-b")),
        v3(c.ProjectUpdated(now=t + 2, project_id=2, description="second")),
        v3(c.CredentialCreated(now=t + 3, api_key="key-1", secret_hash="hash-1")),
        v3(c.CredentialArchived(now=t + 4, credential_id=1)),
        v3(c.CredentialDeleted(now=t + 5, credential_id=1)),
        # A credential limited to reading and writing project 2 until an hour on,
        # and project 1's signing secret rotated.
        v3(
            c.CredentialCreated(
                now=t + 5,
                api_key="key-2",
                secret_hash="hash-2",
                scopes=["read", "write"],
                projects=[2],
                expires_at=t + 3600,
                created_by="ops",
            )
        ),
        v3(c.ProjectUpdated(now=t + 5, project_id=1, signing_secret="sec-a2")),
        v3(c.JobsCreated(now=t + 6, jobs=created)),
        v3(c.JobsCreated(now=t + 6, jobs=[{**created[0], "project_id": 9}])),  # refused
        # A tick: 20 fires and job 21's missed slot, each job's next run kept.
        v3(
            c.SlotsFired(
                now=t + 60.1,
                node_id=1,
                epoch=1,
                fires=[[j, t + 60] for j in many],
                missed=[[21, [t + 60], 0]],
                following=[[t + 120, [*many, 21]]],
            )
        ),
        # Job 3 gets a new schedule (revision 1) ...
        v3(
            c.JobUpdated(
                now=t + 70,
                job_id=3,
                changes={
                    "spec": "@every 2m",
                    "anchor": t + 70,
                    "not_before": t + 70,
                    "next_run": t + 190,
                },
            )
        ),
        # ... while a tick proposed from revision 0 fires it: accepted, but its
        # next run (on the old grid) is not kept; job 4's is.
        v3(
            c.SlotsFired(
                now=t + 120.1,
                node_id=1,
                epoch=1,
                fires=[[3, t + 120], [4, t + 120]],
                following=[[t + 180, [3, 4]]],
            )
        ),
        v3(
            c.SlotsFired(
                now=t + 190.1,
                node_id=1,
                epoch=1,
                fires=[[3, t + 190]],
                following=[[t + 310, [3]]],
                revisions=[[3, 1]],
            )
        ),
        v3(c.JobUpdated(now=t + 191, job_id=6, changes={"data": '"d"'})),  # no new revision
        v3(c.JobPaused(now=t + 200, job_id=5, paused=True)),
        v3(c.JobPaused(now=t + 230.5, job_id=5, paused=False, next_run=t + 240)),
        v3(
            c.ResultsRecorded(
                now=t + 231,
                node_id=1,
                groups=[
                    [t + 60, "success", 200, 1, 12, None, [1, 2, 5, 6]],
                    [t + 60, "failed", 500, 3, 90, "HTTP 500", [7]],
                ],
            )
        ),
        v3(c.JobTriggered(now=t + 232.4, job_id=2, slot=t + 232)),
        v3(c.ExecutionsLost(now=t + 233, executions=[[8, t + 60], [9, t + 60]])),
        v3(c.ExecutionsRedispatched(now=t + 234, node_id=1, executions=[[8, t + 60]])),
        v3(c.JobDeleted(now=t + 235, job_id=10)),
        v3(c.MemberLeft(now=t + 236, node_id=2)),
        v3(c.ProjectDeleted(now=t + 237, project_id=2)),
        # Keyed creations: applied once, replayed, refused with another body.
        v3(c.JobsCreated(now=t + 238, jobs=jobs(t, 2), idempotency=["key-a", "fp-1", t + 9e4])),
        v3(c.JobsCreated(now=t + 239, jobs=jobs(t, 2), idempotency=["key-a", "fp-1", t + 9e4])),
        v3(c.JobsCreated(now=t + 239, jobs=jobs(t, 1), idempotency=["key-a", "fp-2", t + 9e4])),
        v3(
            c.ProjectCreated(
                now=t + 239,
                name="gamma",
                description="",
                signing_secret="sec-c",
                idempotency=["key-b", "fp-3", t + 9e4],
            )
        ),
        v3(
            c.ExecutionsPruned(
                now=t + 240,
                keep_rows=15,
                before=t + 60.15,
                per_job=1,
                job_id_from=1,
                job_id_to=3,
            )
        ),
    ]
    types = {unframe(p)["t"] for p in entries}
    assert types == set(c.COMMAND_TYPES), set(c.COMMAND_TYPES) - types
    assert all(unframe(p)["v"] == 3 for p in entries)
    return entries


def v4(command: c.Command) -> bytes:
    payload = frame(4, command.type_name, args_of(command))
    if c.VERSION == 4:  # while version 4 is current, this is exactly what nodes propose
        assert payload == c.encode(command), command.type_name
    return payload


NO_NEXT_RUN = 2**62
"""``schema.NO_NEXT_RUN``: the kept next run of a job with none left."""


def v4_journal() -> list[bytes]:
    """Every command type of version 4, and the job policies: created with
    policies (stored as sorted JSON, NULL for none), changed by a patch (one
    policy set, one returned to its default, the rest kept), ``max_runs``
    (a fire past it refused, its last fire leaving no next run), catch-up of
    several slots of one job in one tick (marked ``caught_up``), an ``@at`` job's one fire, pause
    and resume with notes, a slot skipped by an overlap policy, and a job
    paused by ``pause_after_failures``."""
    t = 2_000_000_000
    plain = [{**job, "next_run": t + 60} for job in jobs(t, 20)]
    policies: list[dict[str, Any]] = [
        {"max_runs": 2, "overlap": "skip"},
        {"catchup": "all", "catchup_window_seconds": 300.0, "jitter_seconds": 30},
        {
            "start_at": t + 120.0,
            "end_at": t + 240.0,
            "retry": {"attempts": 5, "initial_seconds": 2.0, "multiplier": 2.0},
            "timeout_seconds": 10.0,
            "pause_after_failures": 3,
        },
    ]
    with_policies = [
        {**jobs(t, 21)[20], "policy": policies[0], "next_run": t + 60},  # job 21
        {**jobs(t, 22)[21], "policy": policies[1], "next_run": t + 60},  # job 22
        {**jobs(t, 23)[22], "policy": policies[2], "next_run": t + 120},  # job 23
        {  # job 24: one shot
            **jobs(t, 24)[23],
            "spec": "@at 2033-05-18T03:35:00Z",
            "next_run": t + 100,
            "policy": None,
        },
        {**jobs(t, 25)[24], "spec": "@manually", "next_run": NO_NEXT_RUN},  # job 25
    ]
    entries = [
        v4(c.Noop()),
        v4(c.MemberJoined(now=t, node_id=1, address="http://n1:9090", raft_address="n1:7070")),
        v4(c.AssignmentChanged(now=t, epoch=1, owners=[1] * BUCKETS)),
        v4(c.ProjectCreated(now=t + 1, name="alpha", description="", signing_secret="sec-a")),
        v4(c.ProjectCreated(now=t + 1, name="beta", description="b", signing_secret="sec-b")),
        v4(c.ProjectUpdated(now=t + 2, project_id=2, description="second")),
        v4(c.CredentialCreated(now=t + 3, api_key="key-1", secret_hash="hash-1")),
        v4(c.CredentialArchived(now=t + 4, credential_id=1)),
        v4(c.CredentialDeleted(now=t + 5, credential_id=1)),
        v4(c.JobsCreated(now=t + 6, jobs=plain + with_policies)),
        # Job 21 (max_runs 2) fires at t+60; job 22 (catchup all) catches up
        # three slots in one tick, in order: the two before the newest due
        # one with trigger catchup (``caught_up``).
        v4(
            c.SlotsFired(
                now=t + 60.1,
                node_id=1,
                epoch=1,
                fires=[[j, t + 60] for j in range(1, 22)],
                following=[[t + 120, list(range(1, 22))]],
            )
        ),
        v4(
            c.SlotsFired(
                now=t + 200.1,
                node_id=1,
                epoch=1,
                fires=[[22, t + 60], [22, t + 120], [22, t + 180]],
                missed=[[22, [t], 0]],
                following=[[t + 240, [22]]],
                caught_up=[[22, t + 60], [22, t + 120]],
            )
        ),
        # Job 21's second run is its last (no next run); a third is refused.
        v4(
            c.SlotsFired(
                now=t + 120.1,
                node_id=1,
                epoch=1,
                fires=[[21, t + 120], [23, t + 120]],
                following=[[NO_NEXT_RUN, [21]], [t + 180, [23]]],
            )
        ),
        v4(
            c.SlotsFired(
                now=t + 180.1,
                node_id=1,
                epoch=1,
                fires=[[21, t + 180]],
                following=[[t + 240, [21]]],
            )
        ),
        # The @at job fires once; a second fire of the same slot is refused.
        v4(
            c.SlotsFired(
                now=t + 100.5,
                node_id=1,
                epoch=1,
                fires=[[24, t + 100]],
                following=[[NO_NEXT_RUN, [24]]],
            )
        ),
        v4(c.SlotsFired(now=t + 100.6, node_id=1, epoch=1, fires=[[24, t + 100]])),
        # A patch: job 23's end_at moves, its overlap set, its retry returned
        # to the node's settings; the rest of its policies kept.
        v4(
            c.JobUpdated(
                now=t + 190,
                job_id=23,
                changes={
                    "policy": {"end_at": t + 600.0, "overlap": "buffer_one", "retry": None},
                    "not_before": t + 190,
                    "next_run": t + 240,
                },
            )
        ),
        v4(c.JobUpdated(now=t + 191, job_id=1, changes={"policy": {"max_runs": 1}})),
        v4(c.JobUpdated(now=t + 192, job_id=2, changes={"policy": {"overlap": None}})),
        v4(c.JobPaused(now=t + 200, job_id=5, paused=True, note="receiver down")),
        v4(c.JobPaused(now=t + 230.5, job_id=5, paused=False, next_run=t + 240, note="fixed")),
        v4(c.JobPaused(now=t + 231, job_id=6, paused=True)),
        v4(
            c.ResultsRecorded(
                now=t + 231,
                node_id=1,
                groups=[
                    [t + 60, "success", 200, 1, 12, None, [1, 2, 5, 6, 21]],
                    [t + 60, "failed", 500, 3, 90, "HTTP 500", [7, 22]],
                ],
            )
        ),
        # Job 23 (overlap buffer_one, pause_after_failures 3): a slot fires, the
        # next one waits for it, a third is skipped by the owner; three
        # failures in a row pause it with the reason.
        v4(
            c.SlotsFired(
                now=t + 240.1,
                node_id=1,
                epoch=1,
                fires=[[23, t + 240]],
                following=[[t + 300, [23]]],
                revisions=[[23, 1]],
            )
        ),
        v4(
            c.SlotsFired(
                now=t + 300.1,
                node_id=1,
                epoch=1,
                fires=[[23, t + 300]],
                following=[[t + 360, [23]]],
                revisions=[[23, 1]],
            )
        ),
        v4(
            c.SlotsFired(
                now=t + 360.1,
                node_id=1,
                epoch=1,
                fires=[],
                skipped=[
                    [
                        23,
                        [t + 360],
                        f"overlap buffer_one: 23-{t + 240} is still running and one execution"
                        " already waits",
                    ]
                ],
                following=[[t + 420, [23]]],
                revisions=[[23, 1]],
            )
        ),
        v4(
            c.ResultsRecorded(
                now=t + 361,
                node_id=1,
                groups=[
                    [t + 120, "failed", 500, 1, 20, "HTTP 500", [23]],
                    [t + 240, "failed", 502, 1, 20, "HTTP 502", [23]],
                ],
            )
        ),
        v4(
            c.ResultsRecorded(
                now=t + 362,
                node_id=1,
                groups=[[t + 300, "failed", None, 1, 10000, "timeout after 10s", [23]]],
            )
        ),
        v4(c.JobTriggered(now=t + 232.4, job_id=25, slot=t + 232)),
        v4(c.ExecutionsLost(now=t + 233, executions=[[8, t + 60], [9, t + 60]])),
        v4(c.ExecutionsRedispatched(now=t + 234, node_id=1, executions=[[8, t + 60]])),
        v4(c.JobDeleted(now=t + 235, job_id=10)),
        v4(c.MemberLeft(now=t + 236, node_id=2, remember=True)),  # as nodes propose it now
        v4(c.ProjectDeleted(now=t + 237, project_id=2)),
        v4(c.JobsCreated(now=t + 238, jobs=jobs(t, 2), idempotency=["key-a", "fp-1", t + 9e4])),
        v4(
            c.ProjectCreated(
                now=t + 239,
                name="gamma",
                description="",
                signing_secret="sec-c",
                idempotency=["key-b", "fp-3", t + 9e4],
            )
        ),
        v4(
            c.ExecutionsPruned(
                now=t + 240,
                keep_rows=30,
                before=t + 60.15,
                per_job=2,
                job_id_from=1,
                job_id_to=3,
            )
        ),
        # Added within version 4 (appended, so the entries above replay as
        # before): a failed slot stays done, a skipped one and one never run
        # before the job's last slot are queued, one after it is left alone.
        v4(c.JobBackfilled(now=t + 241, job_id=23, slots=[t + 240, t + 270, t + 360, t + 900])),
        # Optional fields added within version 4 (appended likewise): a job's
        # name and labels, a taken name refused, two manual runs in one second
        # keyed apart, and the departure of node 2 (remembered above) ignored
        # by an automatic join and undone by an operator's.
        v4(
            c.JobsCreated(
                now=t + 242,
                jobs=[
                    {**jobs(t + 242, 1)[0], "name": "nightly", "labels": {"team": "ops"}},
                    {**jobs(t + 242, 2)[1], "labels": {"team": "ops", "env": "prod"}},
                ],
            )
        ),
        v4(c.JobsCreated(now=t + 243, jobs=[{**jobs(t + 243, 1)[0], "name": "nightly"}])),
        v4(
            c.JobUpdated(
                now=t + 244, job_id=1, changes={"name": "renamed", "labels": {"env": "prod"}}
            )
        ),
        v4(c.JobTriggered(now=t + 245.2, job_id=1, slot=t + 245, manual=True)),
        v4(c.JobTriggered(now=t + 245.7, job_id=1, slot=t + 245, manual=True)),
        v4(
            c.MemberJoined(
                now=t + 246,
                node_id=2,
                address="http://n2:9090",
                raft_address="n2:7070",
                automatic=True,
            )
        ),
        v4(
            c.MemberJoined(now=t + 247, node_id=2, address="http://n2:9090", raft_address="n2:7070")
        ),
    ]
    types = {unframe(p)["t"] for p in entries}
    later = V5_TYPES | V6_TYPES
    assert types == set(c.COMMAND_TYPES) - later, set(c.COMMAND_TYPES) - later - types
    assert all(unframe(p)["v"] == 4 for p in entries)
    return entries


V5_TYPES = {"ExecutorCreated", "ExecutorUpdated", "ExecutorDeleted"}
"""The command types version 5 added."""


def v5(command: c.Command) -> bytes:
    payload = frame(5, command.type_name, args_of(command))
    if c.VERSION == 5:  # while version 5 is current, this is exactly what nodes propose
        assert payload == c.encode(command), command.type_name
    return payload


def v5_journal() -> list[bytes]:
    """Every command type of version 5, and executors: one with a secret and
    method, one without; jobs that name one (an unknown one refused, naming
    the item), a job moved onto an executor and back to its own URL, a change
    of an executor (its URL, method and secret cleared), its deletion refused
    while a job uses it and done once none does. And the audit fields: who
    created, changed and deleted (a batch's creator and an item naming another),
    the deletions recorded (a refused one records nothing, one without
    ``deleted_by`` neither) and the audit log pruned by rows and by age."""
    t = 2_100_000_000
    plain = [{**job, "next_run": t + 60} for job in jobs(t, 24)]
    entries = [
        v5(c.Noop()),
        v5(c.MemberJoined(now=t, node_id=1, address="http://n1:9090", raft_address="n1:7070")),
        v5(c.AssignmentChanged(now=t, epoch=1, owners=[1] * BUCKETS)),
        v5(c.ProjectCreated(now=t + 1, name="alpha", description="", signing_secret="sec-a")),
        v5(
            c.ProjectCreated(
                now=t + 1, name="beta", description="b", signing_secret="sec-b", created_by="alice"
            )
        ),
        v5(c.ProjectUpdated(now=t + 2, project_id=2, description="second", modified_by="bob")),
        v5(c.CredentialCreated(now=t + 3, api_key="key-1", secret_hash="hash-1")),
        v5(c.CredentialArchived(now=t + 4, credential_id=1, modified_by="ops")),
        v5(c.CredentialDeleted(now=t + 5, credential_id=1, deleted_by="ops")),
        v5(
            c.ExecutorCreated(
                now=t + 6,
                name="billing",
                webhook_url="http://receiver.test/billing",
                webhook_method="PUT",
                webhook_secret="exec-secret",
                created_by="ops",
            )
        ),
        v5(c.ExecutorCreated(now=t + 7, name="plain", webhook_url="http://receiver.test/plain")),
        # Jobs 1-24 with their own URLs (compressed), 25 and 26 through executors.
        v5(c.JobsCreated(now=t + 8, jobs=plain)),
        v5(
            c.JobsCreated(
                now=t + 9,
                jobs=[
                    {**jobs(t, 1)[0], "callback_url": "", "executor_id": 1, "next_run": t + 60},
                    {
                        **jobs(t, 2)[1],
                        "callback_url": "",
                        "executor_id": 2,
                        "next_run": t + 60,
                        "created_by": "dave",
                    },
                ],
                created_by="carol",
            )
        ),
        # An unknown executor refuses the whole batch, naming the item.
        v5(
            c.JobsCreated(
                now=t + 10,
                jobs=[jobs(t, 1)[0], {**jobs(t, 2)[1], "callback_url": "", "executor_id": 9}],
            )
        ),
        v5(
            c.JobUpdated(
                now=t + 11,
                job_id=3,
                changes={"executor_id": 1, "callback_url": "", "modified_by": "erin"},
            )
        ),
        v5(c.JobUpdated(now=t + 12, job_id=4, changes={"executor_id": 7, "callback_url": ""})),
        v5(
            c.ExecutorUpdated(
                now=t + 13,
                executor_id=1,
                changes={
                    "webhook_url": "http://receiver.test/billing-v2",
                    "webhook_method": "POST",
                    "modified_by": "dev",
                },
            )
        ),
        v5(c.ExecutorUpdated(now=t + 14, executor_id=2, changes={"webhook_secret": "s2"})),
        v5(c.ExecutorUpdated(now=t + 15, executor_id=2, changes={"webhook_secret": None})),
        v5(c.ExecutorUpdated(now=t + 16, executor_id=5, changes={"name": "missing"})),
        v5(c.ExecutorDeleted(now=t + 17, executor_id=2, deleted_by="ops")),
        v5(
            c.JobUpdated(
                now=t + 18,
                job_id=26,
                changes={"callback_url": "http://receiver.test/own", "executor_id": None},
            )
        ),
        v5(c.ExecutorDeleted(now=t + 19, executor_id=2, deleted_by="ops")),
        v5(
            c.SlotsFired(
                now=t + 60.1,
                node_id=1,
                epoch=1,
                fires=[[25, t + 60], [1, t + 60]],
                following=[[t + 120, [1, 25]]],
            )
        ),
        v5(
            c.ResultsRecorded(
                now=t + 61, node_id=1, groups=[[t + 60, "success", 200, 1, 12, None, [1, 25]]]
            )
        ),
        v5(c.JobPaused(now=t + 62, job_id=5, paused=True, note="receiver down", modified_by="ops")),
        v5(c.JobTriggered(now=t + 63.2, job_id=25, slot=t + 63, manual=True)),
        v5(c.JobBackfilled(now=t + 64, job_id=25, slots=[t, t + 30])),
        v5(c.ExecutionsLost(now=t + 65, executions=[[25, t + 63]])),
        v5(c.ExecutionsRedispatched(now=t + 66, node_id=1, executions=[[25, t + 63]])),
        v5(c.JobDeleted(now=t + 67, job_id=10, deleted_by="ops")),
        v5(c.JobDeleted(now=t + 67, job_id=11)),
        v5(c.MemberLeft(now=t + 68, node_id=2, remember=True)),
        v5(c.ProjectDeleted(now=t + 69, project_id=2, deleted_by="ops")),
        v5(
            c.ExecutionsPruned(
                now=t + 70,
                keep_rows=30,
                before=t,
                per_job=2,
                job_id_from=1,
                job_id_to=30,
                audit_keep_rows=3,
                audit_before=t + 6,
            )
        ),
    ]
    types = {unframe(p)["t"] for p in entries}
    assert types == set(c.COMMAND_TYPES) - V6_TYPES, set(c.COMMAND_TYPES) - V6_TYPES - types
    assert all(unframe(p)["v"] == 5 for p in entries)
    return entries


V6_TYPES = {"NodeRunsLost"}
"""The command types version 6 added."""


def v6(command: c.Command) -> bytes:
    payload = frame(6, command.type_name, args_of(command))
    if c.VERSION == 6:  # while version 6 is current, this is exactly what nodes propose
        assert payload == c.encode(command), command.type_name
    return payload


def v6_journal() -> list[bytes]:
    """Every command of the version 5 journal again, as version 6 frames it,
    then what version 6 adds: runs decided ahead of their slot (each
    ``SlotsFired``'s ``now`` before its slots) and result groups ``skipped``
    (a job paused before its slot; here 28): neither a success nor a failure.
    Job 27 (``pause_after_failures`` 2) fails, is skipped, fails: paused at
    its second failure, the third result, not at the skip. Then node 1
    restarts: ``NodeRunsLost`` records its dispatched runs lost except the
    one it keeps (another node's, with nothing dispatched, changes nothing)."""
    t = 2_100_000_000
    entries = [v6(c.decode(payload)) for payload in v5_journal()]
    first, second = jobs(t, 2)
    guarded = {**first, "next_run": t + 120, "policy": {"pause_after_failures": 2}}
    plain = {**second, "next_run": t + 120}
    skipped = ["skipped", None, 0, 0, "job paused before its slot"]
    failed = ["failed", 500, 1, 5, "HTTP 500"]
    entries += [
        v6(c.JobsCreated(now=t + 71, jobs=[guarded, plain])),
        v6(
            c.SlotsFired(
                now=t + 118.5,
                node_id=1,
                epoch=1,
                fires=[[27, t + 120], [28, t + 120]],
                following=[[t + 180, [27, 28]]],
            )
        ),
        v6(c.JobPaused(now=t + 119, job_id=28, paused=True)),
        v6(
            c.ResultsRecorded(
                now=t + 121,
                node_id=1,
                groups=[[t + 120, *failed, [27]], [t + 120, *skipped, [28]]],
            )
        ),
        v6(
            c.SlotsFired(
                now=t + 178.5,
                node_id=1,
                epoch=1,
                fires=[[27, t + 180]],
                following=[[t + 240, [27]]],
            )
        ),
        v6(c.ResultsRecorded(now=t + 181, node_id=1, groups=[[t + 180, *skipped, [27]]])),
        v6(
            c.SlotsFired(
                now=t + 238.5,
                node_id=1,
                epoch=1,
                fires=[[27, t + 240]],
                following=[[t + 300, [27]]],
            )
        ),
        v6(c.ResultsRecorded(now=t + 241, node_id=1, groups=[[t + 240, *failed, [27]]])),
        # A restart of node 1: its runs still dispatched are lost, except those it keeps.
        v6(
            c.SlotsFired(
                now=t + 298.5,
                node_id=1,
                epoch=1,
                fires=[[1, t + 300], [3, t + 300], [25, t + 300]],
                following=[[t + 360, [1, 3, 25]]],
            )
        ),
        v6(c.NodeRunsLost(now=t + 299, node_id=1, keep=[[3, t + 300]])),
        v6(c.NodeRunsLost(now=t + 299.5, node_id=2)),
    ]
    types = {unframe(p)["t"] for p in entries}
    assert types == set(c.COMMAND_TYPES), set(c.COMMAND_TYPES) - types
    assert all(unframe(p)["v"] == 6 for p in entries)
    return entries


JOURNALS = {
    "v1": v1_journal,
    "v2": v2_journal,
    "v3": v3_journal,
    "v4": v4_journal,
    "v5": v5_journal,
    "v6": v6_journal,
}


def main(argv: list[str]) -> None:
    for name in argv or sorted(JOURNALS):
        payloads = JOURNALS[name]()
        assert any(p[:1] == b"z" for p in payloads), f"{name}: no compressed entry"
        write_journal(HERE / f"{name}.journal", payloads)
        with tempfile.TemporaryDirectory() as tmp:
            dump = replay(payloads, Path(tmp) / "state.db")
        (HERE / f"{name}.dump.json").write_text(render(dump))
        rows = sum(len(t["rows"]) for t in dump["tables"].values())
        print(f"{name}: {len(payloads)} entries, {rows} rows")


if __name__ == "__main__":
    main(sys.argv[1:])
