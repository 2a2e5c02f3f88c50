"""Time the garbage collector of every ``scheduler0 start`` process.

Put this directory first on ``PYTHONPATH`` of a bench, as an absolute path
(the nodes inherit it, and run in directories of their own)::

    GC_PROBE_DIR=/tmp/gc PYTHONPATH=$PWD/bench/gc_probe python bench/fire_rate.py --nodes 3 ...

Every 10 s each node writes ``$GC_PROBE_DIR/<pid>.json``: per generation, the
collections so far and the seconds they took (``gc.callbacks``), the
thresholds, the frozen and the tracked objects. ``GC_PROBE_THRESHOLD=a,b,c``
sets the thresholds (after the node's own, which it sets once it starts).
Any other process ignores it.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from typing import Any

_OUT = os.environ.get("GC_PROBE_DIR")
if _OUT and sys.argv[1:2] == ["start"] and sys.argv[0].endswith("scheduler0"):
    _times: dict[int, list[float]] = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
    _started = [0.0]

    def _timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        entry = _times[info["generation"]]
        entry[0] += 1
        entry[1] += time.perf_counter() - _started[0]

    gc.callbacks.append(_timed)

    def _write() -> None:
        os.makedirs(_OUT, exist_ok=True)
        wanted = os.environ.get("GC_PROBE_THRESHOLD")
        set_once = False
        while True:
            time.sleep(10)
            if wanted and not set_once:
                gc.set_threshold(*(int(v) for v in wanted.split(",")))
                set_once = True
            figures = {
                "at": time.time(),
                "collections": {g: c for g, (c, _) in _times.items()},
                "seconds": {g: s for g, (_, s) in _times.items()},
                "threshold": gc.get_threshold(),
                "frozen": gc.get_freeze_count(),
                "tracked": len(gc.get_objects()),
            }
            with open(os.path.join(_OUT, f"{os.getpid()}.json"), "w") as f:
                json.dump(figures, f)

    threading.Thread(target=_write, name="gc-probe", daemon=True).start()
