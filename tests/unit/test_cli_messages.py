"""What ``jobs create`` says when one of its requests fails: what exists now,
and, for a write in doubt, that it may or may not (once, in one message)."""

from __future__ import annotations

import httpx

from scheduler0.cli.jobs_commands import _chunk_failure
from scheduler0.client import Unreachable
from scheduler0.errors import NoQuorum, ValidationFailed

CREATED = [{"id": n} for n in range(1, 1001)]


def test_a_refused_request_after_others_says_what_was_and_was_not_created() -> None:
    text = _chunk_failure(ValidationFailed("spec: bad"), 1000, 1000, CREATED)
    assert "1000 jobs (items 0-999) were created by earlier requests: ids 1-1000" in text
    assert "items 1000 onwards were not created" in text
    assert "may or may not" not in text


def test_a_refused_first_request_created_nothing() -> None:
    text = _chunk_failure(ValidationFailed("spec: bad"), 0, 1000, [])
    assert text.endswith("no job was created")


def test_an_uncommitted_write_is_in_doubt_not_refused() -> None:
    exc = NoQuorum("the write was not committed (timeout); it may still be applied")
    text = _chunk_failure(exc, 1000, 500, CREATED)
    assert "the write is in doubt" in text
    assert "items 1000-1499 may or may not have been created" in text
    assert "were not created" not in text and "no job was created" not in text
    assert "it may still be applied" not in text


def test_a_request_sent_without_an_answer_is_in_doubt_and_a_refused_connection_is_not() -> None:
    timed_out = Unreachable("cannot reach http://n: timed out")
    timed_out.__cause__ = httpx.ReadTimeout("timed out")
    assert "items 0-9 may or may not have been created" in _chunk_failure(timed_out, 0, 10, [])
    refused = Unreachable("cannot reach http://n: connection refused")
    refused.__cause__ = httpx.ConnectError("connection refused")
    assert _chunk_failure(refused, 0, 10, []).endswith("no job was created")
