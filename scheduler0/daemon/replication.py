"""The two sides of replication, as interfaces: the log and the state machine.

A node changes durable state only by proposing a command to its
``ReplicatedLog``; every node's log hands each committed command, in log order,
to its ``ReplicatedStateMachine``. Two logs implement the interface:
``daemon/raft.py`` (pysyncobj, the only module that knows pysyncobj) and
``daemon/memory_log.py`` (one process, for tests). Both pass the same contract
suite (``tests/contract/test_replicated_log.py``).

The rules below are what callers may rely on and what an implementation must
keep; they are checked by that suite where a test can check them.
"""

from __future__ import annotations

from typing import Any, Protocol

from scheduler0.daemon.state import commands as c

DEFAULT_TIMEOUT = -1.0
"""``timeout`` for ``propose`` meaning the node's RaftApplyTimeout."""

WAIT_FOR_VERDICT: float | None = None
"""``timeout`` for ``propose`` that waits for the log's own verdict (commit or
a definite failure) instead of the node's RaftApplyTimeout."""


class SnapshotPin(Protocol):
    """The state at one index, pinned to be written to a snapshot file."""

    def write(self, path: str) -> None:
        """Write it (with the log's data) to ``path``; may run on any thread.
        Raises if cancelled or failed; releases the pin in every case."""
        ...

    def cancel(self) -> None:
        """Make ``write`` stop soon (it raises) or refuse to start; any thread."""
        ...

    def close(self) -> None:
        """Release the pin without writing."""
        ...

    @property
    def cancelled(self) -> bool: ...


class ReplicatedStateMachine(Protocol):
    """What the log drives (cf. hashicorp/raft's FSM).

    * ``apply`` is called once per committed entry, in log order, never
      concurrently with itself or with ``save_snapshot``/``load_snapshot``
      (all three run on the log's one apply thread).
    * ``apply`` is deterministic: a domain error is returned as ``{"error": {...}}``
      (the same on every node); success is ``{"ok": result}``. It raises only
      when this node's own environment failed (disk full, I/O error,
      corruption): the entry is then neither applied nor skipped, and it keeps
      raising, so the replica stops rather than diverge.
      The log passes the entry's ``index`` (its position in the log, the same on
      every node); the state records it with the command's changes.
    * ``save_snapshot(path, log_data)`` writes the whole state plus the log's own
      opaque ``log_data`` to ``path``. ``pin_snapshot(log_data)`` does the same
      in two parts: on the apply thread it pins the state as applied (quickly),
      and the ``SnapshotPin`` it returns writes it later, on any thread, while
      ``apply`` goes on; ``load_snapshot(path)`` replaces the state
      with the file's and returns that ``log_data``. After a load, entries after
      the snapshot are applied again through ``apply``, exactly once each.
    """

    def apply(self, payload: bytes, index: int | None = None) -> dict[str, Any]: ...

    def save_snapshot(self, path: str, log_data: Any) -> None: ...

    def pin_snapshot(self, log_data: Any) -> SnapshotPin: ...

    def load_snapshot(self, path: str) -> Any: ...

    def flush_due(self) -> None:
        """Write what ``apply`` holds in memory once it is due (the log calls
        it on its apply thread, between applies, every tick)."""


class ReplicatedLog(Protocol):
    """The node's replicated log (cf. hashicorp/raft's ``Raft``: Apply, Barrier,
    State, Leader, AddVoter, RemoveServer).

    Threading: every coroutine here is awaited on the node's event loop and
    resolves on it; whatever thread the log applies on stays inside the
    implementation. ``ready``/``is_leader``/``leader_address``/``status`` may be
    called from any thread and never block.

    Ordering: commands proposed by one caller and committed are applied in the
    order they were proposed; everything committed before a ``barrier`` returns
    has been applied on this node when it returns.
    """

    @property
    def ready(self) -> bool:
        """This node has rebuilt its state (snapshot + journal) and may serve it."""
        ...

    @property
    def failure(self) -> str | None:
        """Why this member stopped for good (its own disk failed), or None. The node
        then exits rather than go on with a log it cannot keep."""
        ...

    def start(self) -> None:
        """Start the member and bind its address; raise ``Scheduler0Error`` naming
        the address if it cannot be bound. Call on the main thread."""
        ...

    def stop(self) -> None:
        """Stop the member and release its address and files before returning."""
        ...

    async def propose(self, command: c.Command, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Replicate ``command``; return its apply result (the ``ok`` value).

        Raises the ``Scheduler0Error`` apply returned (a domain error: the command
        committed and changed nothing), or ``NotCommitted`` when the log cannot
        say it committed: no quorum or leader within ``timeout`` (default the
        node's RaftApplyTimeout; ``WAIT_FOR_VERDICT`` waits for the log's own
        verdict), or the log refused it. A ``NotCommitted`` command may still be
        applied later: callers that retry must be idempotent.
        """
        ...

    async def barrier(self) -> None:
        """Return once everything committed before the call is applied here."""
        ...

    def is_leader(self) -> bool: ...

    def leader_address(self) -> str | None: ...

    def status(self) -> dict[str, Any]:
        """``state`` (leader/follower/candidate), ``leader``, ``has_quorum``,
        ``term``, ``commit_index``, ``applied_index``, ``log_length``,
        ``partners_connected`` and ``partners_match_index`` by raft address,
        ``ready``. Empty when stopped."""
        ...

    async def add_member(self, address: str) -> None:
        """Add a member (one at a time); ``NotCommitted`` if not done in time."""
        ...

    async def remove_member(self, address: str) -> None:
        """Remove a member (one at a time); ``NotCommitted`` if not done in time."""
        ...

    async def hand_over_leadership(self, timeout: float) -> None:
        """Make another member the leader and wait until it leads; ``NotCommitted``
        if no member can take over, or none does within ``timeout``."""
        ...
