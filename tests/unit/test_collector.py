"""Garbage-collection pacing (``daemon/collector.py``), in a process of its own
(a freeze would otherwise last for the rest of the test run)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from scheduler0.daemon.collector import YOUNG_THRESHOLD

PROGRAM = """
import gc, json, sys
from scheduler0.daemon import collector

default = gc.get_threshold()
pacer = collector.configure(freeze_after=float(sys.argv[1]))
assert collector.configure() is pacer  # once
threshold = gc.get_threshold()
keep = [[i] for i in range(300_000)]  # long-lived, tracked objects
gc.collect(2)
frozen_after_first = gc.get_freeze_count()
gc.collect(2)  # the frozen objects are not walked again
garbage = [[] for _ in range(10)]
for a, b in zip(garbage, garbage[1:]):
    a.append(b); b.append(a)
del garbage, a, b
unreachable = gc.collect(2)  # new cycles are still collected
print(json.dumps({"freezes": pacer.freezes, "frozen": frozen_after_first,
                  "longest": pacer.longest, "collected": unreachable, "kept": len(keep),
                  "default": default, "threshold": threshold}))
"""


def run(freeze_after: float) -> dict[str, Any]:
    import json

    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(freeze_after)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_a_slow_full_collection_freezes_its_survivors() -> None:
    result = run(0.0)  # every full collection counts as slow
    assert result["frozen"] >= 300_000
    assert result["freezes"] >= 1
    assert result["collected"] >= 10  # cycles made after a freeze are still found


def test_a_quick_full_collection_freezes_nothing() -> None:
    result = run(3600.0)
    assert result["freezes"] == 0
    assert result["frozen"] == 0


def test_the_youngest_generation_is_collected_less_often_the_others_as_before() -> None:
    result = run(3600.0)
    assert result["threshold"] == [YOUNG_THRESHOLD, *result["default"][1:]]
    assert result["default"][0] < YOUNG_THRESHOLD
