"""Timestamps as the API and the callbacks show them: UTC ISO 8601 with a Z."""

from __future__ import annotations

import time
from functools import lru_cache


def iso(ts: float | int | None) -> str | None:
    """UTC ISO 8601 with a Z; whole seconds stay whole (slots), others keep microseconds."""
    if ts is None:
        return None
    if isinstance(ts, int):
        return _iso_seconds(ts)
    return _iso_micro(ts)


@lru_cache(maxsize=1024)
def _iso_micro(ts: float) -> str:
    """Cached: the rows of one command share their timestamps."""
    whole, micro = divmod(round(ts * 1_000_000), 1_000_000)
    return f"{_iso_seconds(whole)[:-1]}.{micro:06d}Z"


@lru_cache(maxsize=8192)
def _iso_seconds(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
