"""What an operator should read in the log without asking: one line when the
leader changes, when this node's share of buckets changes, when a member joins
or leaves, when the memory guard turns on or off. A node removed from the
cluster says so and stops (it would otherwise campaign forever).

Polls the node's own status (cheap reads) every ``period`` seconds on the event
loop; it never proposes anything. A node normally learns of its removal by
applying its own ``MemberLeft``; one that missed it (down or too slow while it
was removed, so raft stopped sending it the log first) only sees its leader
go. After ``orphan_after`` seconds without a leader it asks the other members
(``removal_witness``) whether one of them, further along the log, no longer
lists it; if so it stops too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("scheduler0")


@dataclass
class Observed:
    leader: str | None = None
    term: Any = None
    role: str | None = None
    buckets: int | None = None
    epoch: int | None = None
    members: dict[int, str] | None = None
    over_memory: bool = False


class Watch:
    """Turns changes of this node's view into log lines (and counts leader changes)."""

    def __init__(
        self,
        *,
        node_id: int,
        raft: Callable[[], dict[str, Any]],
        buckets: Callable[[], tuple[int, int]],
        members: Callable[[], list[dict[str, Any]]],
        over_memory: Callable[[], bool],
        departed: Callable[[], list[int]] = list,
        halted: Callable[[], str | None] = lambda: None,
        low_disk: Callable[[], bool] = lambda: False,
        stop_node: Callable[[], None] | None = None,
        removal_witness: Callable[[], Awaitable[int | None]] | None = None,
        period: float = 0.5,
        orphan_after: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._node_id = node_id
        self._raft = raft
        self._buckets = buckets
        self._members = members
        self._departed = departed
        self._over_memory = over_memory
        self._halted = halted
        self._low_disk = low_disk
        self._seen_low_disk = False
        self._stop_node = stop_node or _terminate_self
        self._removal_witness = removal_witness
        self._period = period
        self._orphan_after = orphan_after
        self._clock = clock
        self._leaderless_since: float | None = None
        self._asked_at: float | None = None
        self._seen = Observed()
        self._was_member = False
        self._stopping = False
        self.leader_changes = 0

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        while not self._stopping:
            try:
                self.check()
                await self.check_orphaned()
            except Exception:
                log.exception("watch failed")
            await asyncio.sleep(self._period)

    def check(self) -> None:
        reason = self._halted()
        if reason is not None:
            # The cause was the one CRITICAL line; this and the exit say what follows.
            log.error("node %d stopped applying (%s); exiting", self._node_id, reason)
            self._stopping = True
            self._stop_node()
            return
        self._check_raft()
        self._check_buckets()
        self._check_members()
        self._check_guards()

    async def check_orphaned(self) -> None:
        """Stop if this node has been without a leader for ``orphan_after``
        seconds and another member proves it was removed (asked at most once
        every ``orphan_after`` seconds)."""
        if self._stopping or self._removal_witness is None:
            return
        now = self._clock()
        if self._leaderless_since is None or now - self._leaderless_since < self._orphan_after:
            return
        if self._asked_at is not None and now - self._asked_at < self._orphan_after:
            return
        self._asked_at = now
        witness = await self._removal_witness()
        if witness is not None and not self._stopping:
            log.warning(
                "this node (%d) was removed from the cluster; stopping (member %d no longer"
                " lists it)",
                self._node_id,
                witness,
            )
            self._stopping = True
            self._stop_node()

    def _check_raft(self) -> None:
        raft, seen = self._raft(), self._seen
        leader, role = raft.get("leader"), raft.get("state")
        # A node that restarts after its removal never gets ready (no leader
        # sends it the log), so leaderless time counts before ready too.
        if leader is None and role != "leader":
            if self._leaderless_since is None:
                self._leaderless_since = self._clock()
        else:
            self._leaderless_since = None
        if not raft.get("ready"):
            return
        if leader != seen.leader:
            if leader is None:
                log.warning("no leader (was %s, term %s)", seen.leader, raft.get("term"))
            else:
                log.info("leader is %s (term %s)", leader, raft.get("term"))
            if seen.leader is not None or leader is not None:
                self.leader_changes += 1
            seen.leader = leader
        if role != seen.role:
            if role == "leader":
                log.info("this node is the leader (term %s)", raft.get("term"))
            elif seen.role == "leader":
                log.warning("this node is no longer the leader (now %s)", role)
            seen.role = role

    def _check_buckets(self) -> None:
        buckets, epoch = self._buckets()
        seen = self._seen
        if buckets != seen.buckets:
            if seen.buckets is not None or buckets:
                log.info(
                    "this node owns %d bucket(s) (was %s) at epoch %d",
                    buckets,
                    seen.buckets if seen.buckets is not None else 0,
                    epoch,
                )
            seen.buckets, seen.epoch = buckets, epoch

    def _check_members(self) -> None:
        members = {int(m["node_id"]): str(m["address"]) for m in self._members()}
        seen = self._seen
        if seen.members is not None:
            for node_id in members.keys() - seen.members.keys():
                log.info("member %d joined (%s)", node_id, members[node_id])
            for node_id in seen.members.keys() - members.keys():
                log.info("member %d left (%s)", node_id, seen.members[node_id])
        seen.members = members
        if self._node_id in members:
            self._was_member = True
        elif members and (self._was_member or self._node_id in self._departed()):
            # (departed: removed before this watch saw it a member, such as a
            # leader removed right after it registered the members)
            log.warning("this node (%d) was removed from the cluster; stopping", self._node_id)
            self._stopping = True
            self._stop_node()

    def _check_guards(self) -> None:
        over = self._over_memory()
        if over != self._seen.over_memory:
            if over:
                log.warning("memory guard on: above the MaxMemory share; new jobs are refused")
            else:
                log.info("memory guard off: new jobs are accepted again")
            self._seen.over_memory = over
        low = self._low_disk()
        if low != self._seen_low_disk:
            if low:
                log.warning("disk guard on: free space below MinFreeDiskMb; writes are refused")
            else:
                log.info("disk guard off: writes are accepted again")
            self._seen_low_disk = low


def _terminate_self() -> None:
    """Stop like an operator's SIGTERM would: the API drains, raft closes cleanly."""
    os.kill(os.getpid(), signal.SIGTERM)
