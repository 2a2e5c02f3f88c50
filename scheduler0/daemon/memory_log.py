"""A ``ReplicatedLog`` in one process, for tests: a list of entries applied in
order to a real state machine.

It keeps the interface's rules without a network: a proposal is appended,
applied and answered on the event loop; ``snapshot`` and ``restart`` exercise
the snapshot-plus-journal rebuild with the same state machine code the raft
adapter drives. ``cut_off`` makes it a member without quorum: proposals then
wait their timeout and raise ``NotCommitted`` without being applied.
``hold_answers`` applies a kind of command at once but answers it late, as a
follower learns of a commit after the leader applied it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scheduler0.daemon.replication import DEFAULT_TIMEOUT, ReplicatedStateMachine
from scheduler0.daemon.state import commands as c
from scheduler0.errors import NotCommitted, error_from_dict

DEFAULT_APPLY_TIMEOUT = 1.0


class InMemoryLog:
    """One member that is always leader (unless ``cut_off``)."""

    def __init__(
        self,
        machine: ReplicatedStateMachine,
        *,
        address: str = "memory:1",
        apply_timeout: float = DEFAULT_APPLY_TIMEOUT,
        snapshot_dir: Path | None = None,
    ) -> None:
        self.machine = machine
        self.address = address
        self.apply_timeout = apply_timeout
        self.entries: list[bytes] = []
        """Every committed entry since the last snapshot, in log order."""
        self._snapshot_dir = snapshot_dir
        self._snapshot_index = 0
        self._started = False
        self._quorum = True
        self._members = {address}
        self.failure: str | None = None
        self._held_answers: dict[type[c.Command], asyncio.Event] = {}

    # -- life cycle ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._started

    def start(self) -> None:
        self._started = True

    def stop(self) -> None:
        self._started = False

    def cut_off(self, cut: bool = True) -> None:
        """Lose (or regain) the quorum: nothing commits while cut off."""
        self._quorum = not cut

    def hold_answers(self, kind: type[c.Command]) -> asyncio.Event:
        """Commands of ``kind`` are applied when proposed and answered once
        the returned event is set."""
        return self._held_answers.setdefault(kind, asyncio.Event())

    # -- proposing ----------------------------------------------------------------------

    async def propose(self, command: c.Command, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        limit = self.apply_timeout if timeout == DEFAULT_TIMEOUT else timeout
        if not self._started:
            raise NotCommitted("the log is stopped")
        if not self._quorum:
            await asyncio.sleep(limit if limit is not None else self.apply_timeout)
            raise NotCommitted(
                "the cluster could not commit the write in time (no quorum or no leader);"
                " it may still be applied"
            )
        payload = c.encode(command)
        self.entries.append(payload)
        outcome = self.machine.apply(payload, self._snapshot_index + len(self.entries))
        await asyncio.sleep(0)  # answered on the loop, after other ready callbacks
        held = self._held_answers.get(type(command))
        if held is not None:
            await held.wait()
        if "error" in outcome:
            raise error_from_dict(outcome["error"])
        return outcome["ok"]

    async def barrier(self) -> None:
        await self.propose(c.Noop(now=time.time()))

    # -- snapshots and restart ------------------------------------------------------------

    def snapshot(self) -> None:
        """Write the state machine's snapshot and drop the entries it holds."""
        assert self._snapshot_dir is not None, "snapshot_dir not set"
        self._snapshot_index += len(self.entries)
        self.machine.save_snapshot(
            str(self._snapshot_dir / "memory.snapshot"), self._snapshot_index
        )
        self.entries = []

    def restart(self, new_machine: Callable[[], ReplicatedStateMachine]) -> None:
        """Rebuild as a restarted member does: a fresh state machine, loaded from
        the last snapshot, then every later entry applied once."""
        machine = new_machine()
        if self._snapshot_dir is not None and self._snapshot_index:
            loaded = machine.load_snapshot(str(self._snapshot_dir / "memory.snapshot"))
            assert loaded == self._snapshot_index
        for position, payload in enumerate(self.entries, start=self._snapshot_index + 1):
            machine.apply(payload, position)
        self.machine = machine
        self._started = True

    # -- status ---------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._started and self._quorum

    def leader_address(self) -> str | None:
        return self.address if self.is_leader() else None

    def status(self) -> dict[str, Any]:
        if not self._started:
            return {}
        index = self._snapshot_index + len(self.entries)
        return {
            "state": "leader" if self._quorum else "candidate",
            "leader": self.leader_address(),
            "has_quorum": self._quorum,
            "term": 1,
            "commit_index": index,
            "applied_index": index,
            "log_length": len(self.entries),
            "partners_connected": {m: True for m in self._members if m != self.address},
            "partners_match_index": {m: index for m in self._members if m != self.address},
            "ready": self.ready,
        }

    async def add_member(self, address: str) -> None:
        if not self._quorum:
            raise NotCommitted(f"the membership change (add {address}) timed out")
        self._members.add(address)

    async def remove_member(self, address: str) -> None:
        if not self._quorum:
            raise NotCommitted(f"the membership change (remove {address}) timed out")
        self._members.discard(address)

    async def hand_over_leadership(self, timeout: float) -> None:
        raise NotCommitted("no follower is connected and caught up to take over the leadership")
