"""Callback signatures: round trip, tampering, staleness, header handling."""

from __future__ import annotations

import hashlib
import hmac

from scheduler0 import signing

SECRET = "project-secret"
BODY = b'[{"id":1,"execution_id":"e-1"}]'
NOW = 1_700_000_000


def test_sign_produces_documented_headers() -> None:
    headers = signing.sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {
        "x-scheduler0-timestamp": str(NOW),
        "x-scheduler0-signature": f"v1={expected}",
    }


def test_round_trip_verifies() -> None:
    headers = signing.sign(SECRET, BODY, NOW)
    assert signing.verify(SECRET, BODY, headers, now=NOW)
    assert signing.verify(SECRET, BODY, headers, now=NOW + 299)


def test_tampered_body_timestamp_or_secret_fails() -> None:
    headers = signing.sign(SECRET, BODY, NOW)
    assert not signing.verify(SECRET, BODY + b" ", headers, now=NOW)
    assert not signing.verify("other-secret", BODY, headers, now=NOW)
    moved = headers | {"x-scheduler0-timestamp": str(NOW + 1)}
    assert not signing.verify(SECRET, BODY, moved, now=NOW)
    flipped = headers["x-scheduler0-signature"][:-1] + "0"
    if flipped == headers["x-scheduler0-signature"]:
        flipped = flipped[:-1] + "1"
    assert not signing.verify(SECRET, BODY, headers | {"x-scheduler0-signature": flipped}, NOW)


def test_stale_or_future_timestamp_fails() -> None:
    headers = signing.sign(SECRET, BODY, NOW)
    assert not signing.verify(SECRET, BODY, headers, now=NOW + 301)
    assert not signing.verify(SECRET, BODY, headers, now=NOW - 301)
    assert signing.verify(SECRET, BODY, headers, now=NOW + 1000, tolerance=1000)


def test_missing_or_malformed_headers_fail() -> None:
    headers = signing.sign(SECRET, BODY, NOW)
    assert not signing.verify(SECRET, BODY, {}, now=NOW)
    assert not signing.verify(
        SECRET, BODY, {"x-scheduler0-signature": headers["x-scheduler0-signature"]}, NOW
    )
    assert not signing.verify(SECRET, BODY, headers | {"x-scheduler0-timestamp": "soon"}, NOW)
    bare = headers["x-scheduler0-signature"].removeprefix("v1=")
    assert not signing.verify(SECRET, BODY, headers | {"x-scheduler0-signature": bare}, NOW)


def test_header_names_are_case_insensitive() -> None:
    headers = {key.title(): value for key, value in signing.sign(SECRET, BODY, NOW).items()}
    assert signing.verify(SECRET, BODY, headers, now=NOW)


def test_any_of_several_signatures_may_match() -> None:
    good = signing.sign(SECRET, BODY, NOW)["x-scheduler0-signature"]
    rotated = signing.sign("old-secret", BODY, NOW)["x-scheduler0-signature"]
    headers = {"x-scheduler0-timestamp": str(NOW), "x-scheduler0-signature": f"{rotated}, {good}"}
    assert signing.verify(SECRET, BODY, headers, now=NOW)
