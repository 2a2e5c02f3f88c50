"""The body of a callback, one job object per fire, built as bytes.

A callback POST carries a JSON array of these objects, in the seed's field
order: ``id``, ``project_id``, ``spec``, ``data``, ``timezone``,
``callback_url``, ``execution_type``, ``execution_id``, ``scheduled_at``,
``last_execution_date``. Everything up to the execution id is the same from
one fire of a job to the next, so it is encoded once per owned job
(``payload_head``) and each fire only appends its own fields
(``callback_item``): no row read, dict or JSON encode per fire.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from scheduler0.daemon.timefmt import iso


def payload_head(row: Any) -> tuple[bytes, str, str]:
    """The JSON of a job's callback item up to its execution id (every field
    that does not change from one fire to the next), with the callback URL
    and the project's signing secret. ``data`` is spliced in as stored (it is
    JSON already). Field order is the seed's."""
    head = b"".join(
        (
            b'{"id":',
            str(row["id"]).encode(),
            b',"project_id":',
            str(row["project_id"]).encode(),
            b',"spec":',
            orjson.dumps(row["spec"]),
            b',"data":',
            _data_json(row["data"]),
            b',"timezone":',
            orjson.dumps(row["timezone"]),
            b',"callback_url":',
            orjson.dumps(row["callback_url"]),
            b',"execution_type":',
            orjson.dumps(row["execution_type"]),
            b',"execution_id":"',
        )
    )
    return head, row["callback_url"], row["signing_secret"]


def _data_json(raw: str | None) -> bytes:
    """``jobs.data`` as stored is JSON text (``encode_data``); anything else
    goes out as a JSON string rather than break the whole POST."""
    if raw is None:
        return b"null"
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return orjson.dumps(raw)
    return raw.encode()


def callback_item(head: bytes, exec_id: str, slot: int, previous: int | None) -> bytes:
    """One job object of a callback body: ``head`` (``payload_head``) plus
    the fields of this fire."""
    return head + callback_tail(exec_id, slot, previous)


def callback_tail(exec_id: str, slot: int, previous: int | None) -> bytes:
    """What follows ``head`` in one fire's job object: the fields of this fire.
    A ``Fire`` carries ``(head, tail)`` and the executor joins them straight
    into the POST body: a job with 20 KB of data costs no 20 KB copy per fire
    (nor any for a fire its destination has no room for)."""
    return b"".join(
        (
            exec_id.encode(),
            b'","scheduled_at":"',
            _iso_bytes(slot),
            b'","last_execution_date":',
            b"null" if previous is None else b'"' + _iso_bytes(previous) + b'"',
            b"}",
        )
    )


@lru_cache(maxsize=8192)
def _iso_bytes(slot: int) -> bytes:
    return (iso(slot) or "").encode()
