"""Checks of exactly-once firing over receiver records and fire records.

How an execution row moves (scheduler0/daemon/state/machine.py and
scheduler0/daemon/scheduling/scheduler.py):

* ``SlotsFired`` inserts it ``dispatched`` (``node_id`` = the owner that fired
  it); that node then POSTs it, once, and ``ResultsRecorded`` makes it
  ``success``/``failed``.
* ``ExecutionsLost`` turns ``dispatched`` into ``lost``. It is proposed for rows
  whose sender will not report on them: by the leader for a member that is no healthy worker
  any more (``Coordinator.declare_dead_workers_lost``), or by a node for its own
  rows after a full reload of its jobs (at start, after a snapshot is loaded,
  or when a fire proposal's outcome is unknown), skipping those it sent in this
  run (``Adoption.declare_own_lost``, ``NodeRunsLost``).
* ``ExecutionsRedispatched`` turns ``lost`` back into ``dispatched`` for the
  bucket's current owner, which sends it again under the same execution id.
  The owner adopts every ``lost`` row of its buckets whose slot is at most
  ``MisfireGraceSeconds`` old (``Scheduler._adopt_lost``); older rows stay
  ``lost`` for good.

So a node process sends an execution id at most once, a repeated delivery is
a re-send after its earlier sender crashed, and a row still ``lost`` in the end
is one whose last sender crashed (it may have delivered it before dying, but
its result never got committed) and that nobody took over.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from tests.support.nodes import Client

MAX_PAGES = 1000
"""Bound on the pages :func:`all_executions` reads (a million rows)."""

STALE_AFTER = 10
"""Seconds (before the newest slot) after which a ``dispatched`` row that nobody
ever tried to send counts as lost: its sender posts it within the tick that
fired it, whatever the receiver answers."""

Crashes = Mapping[str, Sequence[float]]
"""Node id (as the receiver records the sender, ``"2"``) -> the wall-clock times
(``time.time()``, taken once the process is gone) at which it was killed."""


def all_executions(client: Client, state: str | None = None) -> list[dict[str, Any]]:
    """Every execution row (only those in ``state``, if given), each once (by row id).

    Pages are newest first and shift while rows are added, so a row may come
    twice; reading until an empty page (never stopping at ``total``) misses none.
    Strongly consistent: everything committed before the call is in.
    """
    rows: dict[int, dict[str, Any]] = {}
    params: dict[str, Any] = {"limit": 1000, "consistency": "strong"}
    if state is not None:
        params["state"] = state
    offset = 0
    for _ in range(MAX_PAGES):
        page = client.data("GET", "/executions", params={**params, "offset": offset})
        if not page["executions"]:
            return list(rows.values())
        rows.update((e["id"], e) for e in page["executions"])
        offset += len(page["executions"])
    raise AssertionError(f"more than {MAX_PAGES} pages of executions: rows added faster than read")


def split_id(execution_id: str) -> tuple[int, int]:
    job_id, slot = execution_id.split("-")
    return int(job_id), int(slot)


def incarnation(crashes: Crashes, node: str, at: float) -> int:
    """Which run of ``node`` a delivery received at ``at`` came from: 0 before
    its first crash, 1 between the first and the second, and so on."""
    return bisect.bisect_left(sorted(crashes.get(node, ())), at)


def crashed_before_next(crashes: Crashes, node: str, run: int) -> float | None:
    """The time run ``run`` of ``node`` ended in a crash (None: it never did)."""
    times = sorted(crashes.get(node, ()))
    return times[run] if run < len(times) else None


def audit(
    records: list[dict[str, Any]],
    executions: list[dict[str, Any]],
    job_ids: set[int],
    period: int = 1,
    crashes: Crashes | None = None,
) -> dict[str, Any]:
    """Assert the invariants and return counts for the test to judge further.

    ``crashes`` lists every node killed (``kill -9``) during the scenario; nodes
    not in it never died. Invariants:

    * one fire record per (job, slot);
    * every delivered execution id has a fire record that is not ``missed``;
    * for each job, the recorded slots cover its grid with no hole between the
      first and last (each slot fired, or recorded ``missed``/``lost``);
    * a node process sends an execution id at most once: the deliveries of one
      id come from distinct (sender, run of the sender) pairs, and every one
      but the last came from a run that then crashed (a re-delivery is a
      re-send after its earlier sender died, never a second send);
    * a row still ``lost`` was last dispatched by a node that crashed, for a
      slot at or before that node's last crash; if it was delivered at all,
      only by runs that then crashed (its sender died before committing the
      result, and nobody re-sent it);
    * no row stays ``dispatched`` without a single attempt to send it for more
      than ``STALE_AFTER`` seconds (before the newest slot): a fired run that no
      node is sending is lost as surely as a missing row.

    Returned: ``holes``, ``duplicate_deliveries`` (deliveries beyond the first
    per id), ``delivered`` (distinct ids), ``redelivered`` (the ids delivered
    more than once), ``lost`` (rows still ``lost``), ``states``, ``senders``.
    """
    crashes = crashes or {}
    executions = [e for e in executions if e["job_id"] in job_ids]
    recorded = Counter((e["job_id"], e["slot"]) for e in executions)
    assert not recorded or max(recorded.values()) == 1, recorded.most_common(3)
    rows = {(e["job_id"], e["slot"]): e for e in executions}
    states = {key: row["state"] for key, row in rows.items()}
    delivered = [r for r in records if r["status"] == 200 and r["id"] in job_ids]
    for record in delivered:
        key = split_id(record["execution_id"])
        assert states.get(key) not in ("missed",), (key, states.get(key))
    by_job: dict[int, list[int]] = defaultdict(list)
    for job_id, slot in recorded:
        by_job[job_id].append(slot)
    holes = 0
    for job_id in job_ids:
        slots = sorted(by_job[job_id])
        assert slots, f"job {job_id} never fired"
        expected = set(range(slots[0], slots[-1] + 1, period))
        holes += len(expected - set(slots))

    deliveries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in delivered:
        deliveries[record["execution_id"]].append(record)
    for execution_id, sent in deliveries.items():
        sent.sort(key=lambda r: r["t"])
        runs = [(r["node"], incarnation(crashes, r["node"], r["t"])) for r in sent]
        assert len(set(runs)) == len(runs), (execution_id, "sent twice by one run", runs)
        for node, run in runs[:-1]:
            assert crashed_before_next(crashes, node, run) is not None, (
                execution_id,
                "re-delivered though its earlier sender never crashed",
                runs,
                dict(crashes),
            )

    lost_rows = [row for row in executions if row["state"] == "lost"]
    for row in lost_rows:
        node = str(row["node_id"])
        execution_id = f"{row['job_id']}-{row['slot']}"
        assert node in crashes, (execution_id, "lost, but its node never crashed", row)
        assert row["slot"] <= max(crashes[node]), (execution_id, "lost after the last crash")
        for record in deliveries.get(execution_id, []):
            run = incarnation(crashes, record["node"], record["t"])
            assert crashed_before_next(crashes, record["node"], run) is not None, (
                execution_id,
                "lost, yet delivered by a run that never crashed",
                record,
            )

    attempted = {r["execution_id"] for r in records}
    newest = max((row["slot"] for row in executions), default=0)
    unsent = [
        f"{row['job_id']}-{row['slot']}"
        for row in executions
        if row["state"] == "dispatched"
        and row["slot"] < newest - STALE_AFTER
        and f"{row['job_id']}-{row['slot']}" not in attempted
    ]
    assert not unsent, (len(unsent), "fired long ago, yet nobody ever sent them", unsent[:10])

    repeats = Counter(r["execution_id"] for r in delivered)
    return {
        "holes": holes,
        "duplicate_deliveries": sum(n - 1 for n in repeats.values()),
        "delivered": len(repeats),
        "redelivered": {execution_id for execution_id, n in repeats.items() if n > 1},
        "lost": len(lost_rows),
        "states": dict(Counter(states.values())),
        "senders": dict(Counter(r.get("node") for r in delivered)),
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` of :func:`audit` for printing: the re-delivered ids counted, a few shown."""
    redelivered = sorted(result["redelivered"])
    return {**result, "redelivered": f"{len(redelivered)} {redelivered[:5]}"}
