"""Membership and the bucket assignment."""

from __future__ import annotations

from typing import Any

import orjson

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import ApplyContext, Change, handles
from scheduler0.daemon.state.schema import BUCKETS
from scheduler0.errors import Conflict, ValidationFailed


@handles(c.AssignmentChanged)
def assignment_changed(ctx: ApplyContext, cmd: c.AssignmentChanged) -> dict[str, Any]:
    db = ctx.db
    if cmd.epoch <= ctx.assignment.epoch:
        raise Conflict(f"epoch {cmd.epoch} is not newer than {ctx.assignment.epoch}")
    if len(cmd.owners) != BUCKETS:
        raise ValidationFailed(f"assignment must cover {BUCKETS} buckets")
    db.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [("epoch", str(cmd.epoch)), ("owners", orjson.dumps(cmd.owners).decode())],
    )
    ctx.assignment.epoch = cmd.epoch
    ctx.assignment.owners = list(cmd.owners)
    ctx.changed(Change.ASSIGNMENT, cmd.epoch)
    return {"epoch": cmd.epoch}


@handles(c.MemberJoined)
def member_joined(ctx: ApplyContext, cmd: c.MemberJoined) -> dict[str, Any]:
    db = ctx.db
    departed = db.execute(
        "SELECT 1 FROM departed_members WHERE node_id = ?", (cmd.node_id,)
    ).fetchone()
    if departed is not None:
        if cmd.automatic:
            return {"node_id": cmd.node_id, "ignored": "departed"}
        db.execute("DELETE FROM departed_members WHERE node_id = ?", (cmd.node_id,))
    db.execute(
        "INSERT INTO members (node_id, address, raft_address, joined_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(node_id) DO UPDATE SET address = excluded.address,"
        " raft_address = excluded.raft_address",
        (cmd.node_id, cmd.address, cmd.raft_address, cmd.now),
    )
    ctx.changed(Change.MEMBERS, cmd.node_id)
    return {"node_id": cmd.node_id}


@handles(c.MemberLeft)
def member_left(ctx: ApplyContext, cmd: c.MemberLeft) -> dict[str, Any]:
    db = ctx.db
    db.execute("DELETE FROM members WHERE node_id = ?", (cmd.node_id,))
    if cmd.remember:
        db.execute(
            "INSERT OR REPLACE INTO departed_members (node_id, left_at) VALUES (?, ?)",
            (cmd.node_id, cmd.now),
        )
    ctx.changed(Change.MEMBERS, cmd.node_id)
    return {"node_id": cmd.node_id}
