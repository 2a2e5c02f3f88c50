"""HMAC-SHA256 signatures on callback POSTs, for senders and receivers.

Every callback POST from scheduler0 carries two headers:

- ``x-scheduler0-timestamp``: unix seconds at which the attempt was signed.
- ``x-scheduler0-signature``: ``v1=<hex>``, where ``<hex>`` is
  ``HMAC_SHA256(key=signing_secret, msg=b"<timestamp>." + raw_body)``.

The body is the JSON array of job objects; each carries its ``execution_id``,
so the signature covers the ids, the timestamp and the payload. Each retry is
signed afresh with its own timestamp.

To verify as a receiver: take the RAW request body (the bytes, before any JSON
parsing), recompute the HMAC with your project's signing secret, compare in
constant time, and reject timestamps too far from your clock (replays). Then
de-duplicate by ``execution_id``: delivery is at-least-once. In Python::

    import hashlib, hmac, time
    ts = headers["x-scheduler0-timestamp"]
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
    ok = hmac.compare_digest(headers["x-scheduler0-signature"], "v1=" + mac.hexdigest())
    ok = ok and abs(time.time() - int(ts)) <= 300

or simply ``scheduler0.signing.verify(secret, body, headers, int(time.time()))``.
The signature header may list several comma-separated ``v1=`` values (room for
secret rotation); a receiver accepts the POST if any one of them matches.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

TIMESTAMP_HEADER = "x-scheduler0-timestamp"
SIGNATURE_HEADER = "x-scheduler0-signature"
SCHEME = "v1"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """Return the hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Return the two signing headers for a POST of ``body`` sent at ``timestamp``."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, body, timestamp)}",
    }


def verify(
    secret: str, body: bytes, headers: Mapping[str, str], now: int, tolerance: int = 300
) -> bool:
    """Tell whether ``headers`` hold a valid, fresh signature of ``body``.

    False when a header is missing or malformed, when the timestamp is more than
    ``tolerance`` seconds away from ``now`` (either way), or when no ``v1=``
    signature matches. Comparison is constant-time.
    """
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    raw_signature = _header(headers, SIGNATURE_HEADER)
    if raw_timestamp is None or raw_signature is None:
        return False
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp).encode()
    matched = False
    for part in raw_signature.split(","):
        scheme, _, value = part.strip().partition("=")
        # No early exit: every candidate is compared, in constant time each.
        if scheme == SCHEME and hmac.compare_digest(expected, value.encode()):
            matched = True
    return matched


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Look ``name`` up exactly, then case-insensitively (plain dicts may use any case)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None
