"""The callback item a worker sends: pre-encoded bytes equal to the job object."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from scheduler0.daemon.executor.callback_body import callback_item, payload_head
from scheduler0.daemon.timefmt import iso


@pytest.mark.parametrize(
    "data",
    [None, {"name": 'say "hi"', "n": [1, 2.5, None]}, "plain ✓ text", 0, [], {"nested": {"a": {}}}],
)
@pytest.mark.parametrize("previous", [None, 1_795_000_000])
def test_the_item_is_the_job_object_in_the_seed_order(data: Any, previous: int | None) -> None:
    row = {
        "id": 42,
        "project_id": 7,
        "spec": "0 30 * * * *",
        "data": None if data is None else orjson.dumps(data).decode(),
        "timezone": "America/New_York",
        "callback_url": 'http://127.0.0.1:9/cb?x="1"&y=\\',
        "execution_type": "http",
        "signing_secret": "whsec_x",
    }
    head, url, secret = payload_head(row)
    slot = 1_795_000_060
    item = orjson.loads(callback_item(head, f"42-{slot}", slot, previous))
    assert (url, secret) == (row["callback_url"], "whsec_x")
    assert list(item.items()) == [
        ("id", 42),
        ("project_id", 7),
        ("spec", "0 30 * * * *"),
        ("data", data),
        ("timezone", "America/New_York"),
        ("callback_url", row["callback_url"]),
        ("execution_type", "http"),
        ("execution_id", f"42-{slot}"),
        ("scheduled_at", iso(slot)),
        ("last_execution_date", iso(previous)),
    ]
