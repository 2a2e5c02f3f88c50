"""Idempotent creation: a retry with the same key answers the first result and
writes nothing, on whichever node it reaches.

A client sends ``Idempotency-Key`` with ``POST /jobs`` or ``POST /projects``.
The proposer folds the caller, the route and the key into one hash, and the
request body into a fingerprint, and stamps when the key expires; the command
carries the three (``commands.IdempotencyKey``). Apply, in log order on every
node, looks the key up in the replicated ``idempotency_keys`` table:

* unknown (or expired): the command applies as usual and its result is
  remembered under the key, in the same transaction;
* known, same fingerprint: nothing is written; the remembered result comes
  back, marked ``replayed``;
* known, another fingerprint: a ``Conflict`` naming the header (the key was
  reused for a different request).

Because the table is replicated, a retry that reaches another node after a
leader change (the first answer lost with the old leader) still finds the key.
Only successful results are remembered: a refused request may be retried.
Expired keys are deleted by the next keyed command (``expires_at`` against the
command's ``now``, both stamped by proposers, so every node deletes the same).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import ApplyContext
from scheduler0.errors import Conflict, FieldError

HEADER = "Idempotency-Key"
KEYED = (c.JobsCreated, c.ProjectCreated)
"""The command types that may carry a key."""


def apply_once(ctx: ApplyContext, now: float, key: c.IdempotencyKey, run: Callable[[], Any]) -> Any:
    """``run()`` unless ``key`` was seen: then its first result, marked ``replayed``."""
    db = ctx.db
    db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,))
    seen = db.execute(
        "SELECT fingerprint, result FROM idempotency_keys WHERE key = ?", (key.key,)
    ).fetchone()
    if seen is not None:
        if seen[0] != key.fingerprint:
            raise Conflict(
                f"this {HEADER} was already used for a different request",
                [FieldError(HEADER, "already used with another body; use a new key")],
            )
        result: dict[str, Any] = orjson.loads(seen[1])
        return {**result, "replayed": True}
    result = run()
    db.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, result, expires_at) VALUES (?, ?, ?, ?)",
        (key.key, key.fingerprint, orjson.dumps(result).decode(), key.expires_at),
    )
    return result
