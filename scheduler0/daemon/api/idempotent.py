"""``Idempotency-Key`` on the create routes: what the proposer stamps into the
command (``state/idempotency.py`` decides, in apply, on every node)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
from starlette.requests import Request

from scheduler0.daemon.api.http import services
from scheduler0.daemon.state.idempotency import HEADER
from scheduler0.errors import FieldError, ValidationFailed

MAX_KEY_LENGTH = 255

REPLAYED_HEADER = "Idempotent-Replayed"
"""Set to ``true`` on an answer that repeats a first result."""


def idempotency_key(request: Request, route: str, body: Any) -> list[Any] | None:
    """The command's ``IdempotencyKey`` for this request, or None without the header.

    The key is scoped to the caller (a credential's key cannot replay another
    credential's result) and the route; the fingerprint is of the parsed body,
    so whitespace and key order do not make two retries differ."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not (raw.isascii() and raw.isprintable()):
        raise ValidationFailed(
            f"{HEADER}: expected 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            [FieldError(HEADER, f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")],
        )
    caller = getattr(request.scope.get("user"), "display_name", "anonymous")
    key = hashlib.sha256(f"{caller}\n{route}\n{raw}".encode()).hexdigest()
    fingerprint = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    window = services(request).settings.idempotency_window_hours * 3600
    return [key, fingerprint, time.time() + window]


def replay_headers(result: dict[str, Any]) -> dict[str, str]:
    return {REPLAYED_HEADER: "true"} if result.get("replayed") else {}
