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

Standard Webhooks
-----------------

Every callback POST also carries the three headers of the Standard Webhooks
specification (https://www.standardwebhooks.com), so any of its libraries can
verify it:

- ``webhook-id``: ``<batch id>-<chunk number>`` (e.g. ``3f09c2a1d4e5b687-2``),
  the same on every retry of that chunk: an idempotency key for the POST.
- ``webhook-timestamp``: the same unix seconds as ``x-scheduler0-timestamp``.
- ``webhook-signature``: ``v1,<base64>``, where ``<base64>`` is the standard
  base64 of ``HMAC_SHA256(key, b"<webhook-id>.<timestamp>." + raw_body)``.

The key is the same as for ``x-scheduler0-signature``: the UTF-8 bytes of the
project's ``signing_secret``, used as they are (the specification's migration
advice: reuse the existing secret). Its Standard Webhooks form, the string the
libraries take, is therefore ``"whsec_" + base64(signing_secret bytes)``
(:func:`standard_webhooks_secret`)::

    from standardwebhooks import Webhook
    jobs = Webhook(standard_webhooks_secret(signing_secret)).verify(body, headers)
    # or, the same key given as bytes: Webhook(signing_secret.encode())

Do not hand ``signing_secret`` itself to a Standard Webhooks library: it starts
with ``whsec_`` but what follows is not the key in standard base64 (it is
URL-safe text whose bytes are the key), so the library would derive another
key (or refuse the string as bad base64) and every verification would fail.
Unlike ``x-scheduler0-signature``, this signature also covers the batch and
chunk (through ``webhook-id``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

TIMESTAMP_HEADER = "x-scheduler0-timestamp"
SIGNATURE_HEADER = "x-scheduler0-signature"
SCHEME = "v1"

WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
STANDARD_SECRET_PREFIX = "whsec_"


def _hmac(secret: str, prefix: str, body: bytes) -> hmac.HMAC:
    """HMAC-SHA256 of ``prefix`` then ``body`` under ``secret``, fed in two
    parts: a callback body of megabytes is not copied to be signed."""
    mac = hmac.new(secret.encode(), prefix.encode(), hashlib.sha256)
    mac.update(body)
    return mac


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """Return the hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    return _hmac(secret, f"{timestamp}.", body).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Return the two signing headers for a POST of ``body`` sent at ``timestamp``."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, body, timestamp)}",
    }


def standard_webhooks_secret(secret: str) -> str:
    """The Standard Webhooks form of a project's signing secret: ``whsec_`` plus
    the standard base64 of its UTF-8 bytes (the HMAC key of both signatures)."""
    return STANDARD_SECRET_PREFIX + base64.b64encode(secret.encode()).decode()


def standard_signature(secret: str, webhook_id: str, body: bytes, timestamp: int) -> str:
    """``v1,<base64 HMAC-SHA256 of b"<webhook_id>.<timestamp>." + body>``, keyed
    with the UTF-8 bytes of ``secret``."""
    if "." in webhook_id:
        raise ValueError("a webhook id must not contain '.'")
    digest = _hmac(secret, f"{webhook_id}.{timestamp}.", body).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_standard(secret: str, webhook_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Return the Standard Webhooks headers for a POST of ``body`` sent at ``timestamp``."""
    return {
        WEBHOOK_ID_HEADER: webhook_id,
        WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
        WEBHOOK_SIGNATURE_HEADER: standard_signature(secret, webhook_id, body, timestamp),
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
