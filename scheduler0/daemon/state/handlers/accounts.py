"""Projects and client credentials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import ApplyContext, Change, handles, require
from scheduler0.daemon.state.handlers.audit import DeletedObject, record_deletions
from scheduler0.errors import Conflict, FieldError


@handles(c.ProjectCreated)
def project_created(ctx: ApplyContext, cmd: c.ProjectCreated) -> dict[str, Any]:
    db = ctx.db
    if db.execute("SELECT 1 FROM projects WHERE name = ?", (cmd.name,)).fetchone():
        raise Conflict(
            f"a project named {cmd.name!r} already exists",
            [FieldError("name", "already taken")],
        )
    cur = db.execute(
        "INSERT INTO projects (name, description, signing_secret, created_at, updated_at,"
        " created_by) VALUES (?, ?, ?, ?, ?, ?)",
        (cmd.name, cmd.description, cmd.signing_secret, cmd.now, cmd.now, cmd.created_by),
    )
    return {"id": cur.lastrowid}


@handles(c.ProjectUpdated)
def project_updated(ctx: ApplyContext, cmd: c.ProjectUpdated) -> dict[str, Any]:
    db = ctx.db
    require(db, "projects", cmd.project_id, "project")
    if cmd.name is not None:
        clash = db.execute(
            "SELECT 1 FROM projects WHERE name = ? AND id != ?", (cmd.name, cmd.project_id)
        ).fetchone()
        if clash:
            raise Conflict(
                f"a project named {cmd.name!r} already exists",
                [FieldError("name", "already taken")],
            )
    db.execute(
        "UPDATE projects SET name = COALESCE(?, name), description = COALESCE(?, description),"
        " signing_secret = COALESCE(?, signing_secret), modified_by = COALESCE(?, modified_by),"
        " updated_at = ? WHERE id = ?",
        (
            cmd.name,
            cmd.description,
            cmd.signing_secret,
            cmd.modified_by,
            cmd.now,
            cmd.project_id,
        ),
    )
    if cmd.signing_secret is not None:
        # The owners keep each job's callback head with its secret: re-read them.
        jobs = db.execute("SELECT id FROM jobs WHERE project_id = ?", (cmd.project_id,))
        ctx.changed(Change.JOBS, [row[0] for row in jobs])
    return {"id": cmd.project_id}


@handles(c.ProjectDeleted)
def project_deleted(ctx: ApplyContext, cmd: c.ProjectDeleted) -> dict[str, Any]:
    db = ctx.db
    require(db, "projects", cmd.project_id, "project")
    (jobs,) = db.execute(
        "SELECT COUNT(*) FROM jobs WHERE project_id = ?", (cmd.project_id,)
    ).fetchone()
    if jobs:
        raise Conflict(f"project {cmd.project_id} still has {jobs} job(s); delete them first")
    (name,) = db.execute("SELECT name FROM projects WHERE id = ?", (cmd.project_id,)).fetchone()
    deleted = DeletedObject("project", cmd.project_id, name, cmd.project_id)
    record_deletions(db, cmd.now, cmd.deleted_by, [deleted], cmd.deleted_as)
    db.execute("DELETE FROM projects WHERE id = ?", (cmd.project_id,))
    return {"id": cmd.project_id}


@handles(c.CredentialCreated)
def credential_created(ctx: ApplyContext, cmd: c.CredentialCreated) -> dict[str, Any]:
    db = ctx.db
    cur = db.execute(
        "INSERT INTO credentials (api_key, secret_hash, description, archived, created_at,"
        " updated_at, scopes, projects, expires_at, created_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            cmd.api_key,
            cmd.secret_hash,
            cmd.description,
            int(cmd.archived),
            cmd.now,
            cmd.now,
            _json_list(cmd.scopes),
            _json_list(cmd.projects),
            cmd.expires_at,
            cmd.created_by,
        ),
    )
    return {"id": cur.lastrowid}


@handles(c.CredentialArchived)
def credential_archived(ctx: ApplyContext, cmd: c.CredentialArchived) -> dict[str, Any]:
    db = ctx.db
    require(db, "credentials", cmd.credential_id, "credential")
    db.execute(
        "UPDATE credentials SET archived = ?, modified_by = COALESCE(?, modified_by),"
        " updated_at = ? WHERE id = ?",
        (int(cmd.archived), cmd.modified_by, cmd.now, cmd.credential_id),
    )
    return {"id": cmd.credential_id}


@handles(c.CredentialDeleted)
def credential_deleted(ctx: ApplyContext, cmd: c.CredentialDeleted) -> dict[str, Any]:
    db = ctx.db
    require(db, "credentials", cmd.credential_id, "credential")
    api_key, description = db.execute(
        "SELECT api_key, description FROM credentials WHERE id = ?", (cmd.credential_id,)
    ).fetchone()
    # The api key names it (it is no secret: lists show it); no project's record.
    deleted = DeletedObject(
        "credential", cmd.credential_id, description or None, None, {"api_key": api_key}
    )
    record_deletions(db, cmd.now, cmd.deleted_by, [deleted], cmd.deleted_as)
    db.execute("DELETE FROM credentials WHERE id = ?", (cmd.credential_id,))
    return {"id": cmd.credential_id}


def _json_list(values: Sequence[Any] | None) -> str | None:
    """A JSON array column; NULL (every scope, every project) for None."""
    return None if values is None else orjson.dumps(list(values)).decode()
