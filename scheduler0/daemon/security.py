"""Credential secrets and operator checks.

A client secret is shown once, at creation, and stored only as
HMAC-SHA256(SecretKey, secret): a copy of the database (or of a raft
snapshot) does not reveal usable secrets. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_secret(secret_key: str, api_secret: str) -> str:
    return hmac.new(secret_key.encode(), api_secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret_key: str, api_secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret_key, api_secret), stored_hash)


def new_api_key() -> str:
    return "s0k_" + secrets.token_urlsafe(18)


def new_api_secret() -> str:
    return "s0s_" + secrets.token_urlsafe(32)


def new_signing_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def same_text(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
