"""The ``ReplicatedLog`` on pysyncobj. The only module that imports pysyncobj.

Why the settings are what they are (measured, see DESIGN.md):

* ``appendEntriesUseBatch=False``: batch mode ships entries only every
  ``appendEntriesPeriod`` and adds ~100 ms to every write.
* ``appendEntriesBatchSizeBytes`` raised to 32 MiB: a single entry at or over
  this size takes a chunked path that misjudges its end; our largest command
  (a compressed batch of jobs) stays far below it.
* ``password`` always set (else the wire is zlib(pickle), i.e. remote code
  execution), ``bindAddress`` always the configured address (else 0.0.0.0),
  ``maxBindRetries`` finite (else a taken port hangs start-up forever).
* ``dnsCacheTime`` 30 s instead of 600 s: a peer's host name is resolved
  only when connecting to it, and a container recreated under the same name
  (docker-compose.yml) usually gets a new address, which the default cache
  would keep ignoring for up to 10 minutes (read from pysyncobj's resolver).
* ONE replicated method, ``apply_command``: pysyncobj numbers replicated
  methods by sorted name, so a second one would renumber the journal.
* The database is rebuilt at every start from snapshot + journal (pysyncobj
  replays the journal after the snapshot through ``apply_command``), so no
  command is applied twice to the same file.
* The SyncObj must be built on the main thread: its tick thread stops when
  the constructing thread exits.
* A snapshot seeded by ``scheduler0 restore`` (``scheduler0/backup.py``)
  carries a marker instead of pysyncobj's data; ``_load_snapshot`` turns it
  into what pysyncobj expects (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mmap
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj import journal as pysyncobj_journal
from pysyncobj.journal import ResizableFile
from pysyncobj.monotonic import monotonic as raft_clock
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.tcp_server import TcpServer
from pysyncobj.transport import TCPTransport

from scheduler0.backup import JOURNAL_FILE, SNAPSHOT_FILE, is_seed_marker
from scheduler0.daemon.replication import DEFAULT_TIMEOUT, ReplicatedStateMachine
from scheduler0.daemon.state import commands as c
from scheduler0.errors import NotCommitted, Scheduler0Error, error_from_dict

log = logging.getLogger(__name__)

STARTUP_ELECTION_GRACE = 2.5
"""Seconds a starting member of a multi-node cluster listens for a leader
before it may call an election."""

DNS_CACHE_SECONDS = 30.0
"""How long a peer's resolved address is reused for new connections."""

_FAIL_NAMES = {value: name for name, value in vars(FAIL_REASON).items() if name.isupper()}


@dataclass(frozen=True)
class RaftOptions:
    self_address: str
    partner_addresses: list[str]
    data_dir: Path
    password: str
    apply_timeout: float
    snapshot_min_entries: int
    snapshot_min_time: float
    connection_timeout: float = 3.5
    raft_min_timeout: float = 0.4
    raft_max_timeout: float = 1.4
    leader_fallback_timeout: float = 3.0
    connection_retry_time: float = 1.0
    dynamic_membership: bool = True


class _ReservingFile(ResizableFile):  # type: ignore[misc]
    """pysyncobj's journal file with its growth made safe: ``mmap.resize``
    extends the file sparsely, and the first write to a page that the full file
    system cannot back kills the process with SIGBUS. Reserving the new region
    with ``posix_fallocate`` first turns a full disk into an ``OSError``
    (ENOSPC) raised on the tick thread, before any byte is written, and
    ``on_full`` halts the node cleanly. Relies on ResizableFile internals:
    pysyncobj is pinned to 0.3.17."""

    on_full: ClassVar[dict[str, Callable[[OSError], None]]] = {}
    """By journal file name: what to do when the disk cannot hold it."""

    def write(self, offset: int, values: bytes) -> None:
        mm: mmap.mmap = getattr(self, "_ResizableFile__mm")  # noqa: B009
        end = offset + len(values)
        if end > len(mm):
            current = len(mm)
            grown = max(int(current * self._ResizableFile__resizeFactor), end)
            fileno = self._ResizableFile__f.fileno()
            try:
                os.posix_fallocate(fileno, current, grown - current)
            except OSError as exc:
                handler = self.on_full.get(self._ResizableFile__fileName)
                if handler is not None:
                    handler(exc)
                raise
            # The file is ``grown`` bytes now (``mmap.size()`` reports the file's
            # size, which ResizableFile takes for the mapping's): map all of it.
            try:
                mm.resize(grown)
            except (SystemError, OSError):
                mm.close()
                setattr(self, "_ResizableFile__mm", mmap.mmap(fileno, 0))  # noqa: B010
        super().write(offset, values)


pysyncobj_journal.ResizableFile = _ReservingFile  # FileJournal builds its file by this name


class _QuietWhenHalted(logging.Filter):
    """pysyncobj logs a traceback on every tick (20 a second) while an entry
    cannot be applied or journaled; after the one CRITICAL line, drop those."""

    def __init__(self, halted: Callable[[], bool]) -> None:
        super().__init__()
        self._halted = halted

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and self._halted())


class _ClosingTcpServer(TcpServer):  # type: ignore[misc]
    """pysyncobj's TcpServer with one leak fixed: when ``bind`` fails (the port is
    still held, say by a process that is just stopping) it drops the new socket
    without closing it, and ``maxBindRetries`` attempts leave that many open
    sockets to the garbage collector. Relies on TcpServer internals: pysyncobj is
    pinned to 0.3.17."""

    def bind(self) -> None:
        try:
            super().bind()
        except OSError:
            sock: socket.socket | None = getattr(self, "_TcpServer__socket", None)
            if sock is not None:
                sock.close()
                self._TcpServer__socket = None
            raise


class _KeepaliveTransport(TCPTransport):  # type: ignore[misc]
    """Sends a tiny message of a type the receiver ignores to every connected
    partner about once a second. Without it, links between followers sit idle,
    pysyncobj drops them on the first send after ``connectionTimeout``, and
    the first RequestVote of every election is lost (elections take two rounds).
    Relies on TCPTransport internals: pysyncobj is pinned to 0.3.17."""

    _KEEPALIVE_EVERY = 1.0

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self._last_keepalive = 0.0
        syncObj.addOnTickCallback(self._keepalive_tick)

    def _createServer(self) -> None:
        super()._createServer()
        self._server.__class__ = _ClosingTcpServer

    def _keepalive_tick(self) -> None:
        now = time.monotonic()
        if now - self._last_keepalive < self._KEEPALIVE_EVERY:
            return
        self._last_keepalive = now
        for node in list(self._nodes):
            connection = self._connections.get(node)
            if connection is not None and connection.state == CONNECTION_STATE.CONNECTED:
                self.send(node, {"type": "scheduler0_keepalive"})


class _ReplicatedLog(SyncObj):  # type: ignore[misc]
    def __init__(
        self,
        self_address: str,
        partners: list[str],
        conf: Any,
        machine: ReplicatedStateMachine,
    ) -> None:
        self._machine = machine
        self._has_partners = bool(partners)
        super().__init__(self_address, partners, conf, transportClass=_KeepaliveTransport)
        if partners:
            # pysyncobj has no pre-vote: a restarted node that times out before
            # the leader has reconnected to it campaigns with a higher term and
            # deposes a healthy leader when it connects. Give the leader time
            # to reach us first (it retries every connectionRetryTime).
            self._SyncObj__raftElectionDeadline = raft_clock() + STARTUP_ELECTION_GRACE

    @replicated  # type: ignore[misc,untyped-decorator]
    def apply_command(self, payload: bytes) -> dict[str, Any]:
        if self._has_partners and self._getLeader() is None:
            # Replaying the journal at start-up can take seconds, during which
            # the election deadline would pass unnoticed: keep listening for
            # the leader until the replay is over.
            self._SyncObj__raftElectionDeadline = max(
                self._SyncObj__raftElectionDeadline, raft_clock() + STARTUP_ELECTION_GRACE
            )
        # Called only from pysyncobj's apply loop, which counts raftLastApplied
        # up after each entry: this entry's index is the next one.
        return self._machine.apply(payload, self.raftLastApplied + 1)


class RaftLog:
    """The ``ReplicatedLog`` on pysyncobj: one raft member of the cluster.

    Owns the SyncObj, its tick thread, its port and its journal and snapshot
    files. Keeps pysyncobj's conventions inside: its ``(result, fail reason)``
    callbacks run on the tick thread and are hopped onto the caller's event
    loop here; callers only see awaitables, results and typed errors.
    Never applies anything itself: the ``ReplicatedStateMachine`` does, on the
    tick thread, in log order.
    """

    def __init__(self, options: RaftOptions, machine: ReplicatedStateMachine) -> None:
        self.options = options
        self.machine = machine
        self._ready = threading.Event()
        self._sync: _ReplicatedLog | None = None
        self.failure: str | None = None
        """Why this member stopped: its journal could not grow (the disk is full)."""

    def _journal_full(self, exc: OSError) -> None:
        if self.failure is None:
            self.failure = f"raft journal cannot grow: {exc}"
            log.critical(
                "%s. This node stops (nothing is lost: the entry was not written) and"
                " exits; free the disk and restart it",
                self.failure,
            )

    def start(self) -> None:
        """Build the SyncObj and wait until its port is bound. Call on the main thread."""
        opts = self.options
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        _ReservingFile.on_full[str(opts.data_dir / "raft.journal")] = self._journal_full
        quiet = _QuietWhenHalted(
            lambda: self.failure is not None or getattr(self.machine, "halted", None) is not None
        )
        logging.getLogger("pysyncobj").addFilter(quiet)
        logging.getLogger("pysyncobj.syncobj").addFilter(quiet)
        conf = SyncObjConf(
            password=opts.password,
            bindAddress=opts.self_address,
            maxBindRetries=5,
            bindRetryTime=0.5,
            appendEntriesUseBatch=False,
            appendEntriesBatchSizeBytes=32 * 2**20,
            sendBufferSize=2**20,
            recvBufferSize=2**20,
            journalFile=str(opts.data_dir / JOURNAL_FILE),
            fullDumpFile=str(opts.data_dir / SNAPSHOT_FILE),
            serializer=self.machine.save_snapshot,
            deserializer=self._load_snapshot,
            logCompactionMinEntries=opts.snapshot_min_entries,
            logCompactionMinTime=opts.snapshot_min_time,
            logCompactionSplit=True,
            dynamicMembershipChange=opts.dynamic_membership,
            connectionTimeout=opts.connection_timeout,
            connectionRetryTime=opts.connection_retry_time,
            raftMinTimeout=opts.raft_min_timeout,
            raftMaxTimeout=opts.raft_max_timeout,
            leaderFallbackTimeout=opts.leader_fallback_timeout,
            commandsWaitLeader=True,
            onReady=self._ready.set,
            tcp_keepalive=(16, 3, 5),
            dnsCacheTime=DNS_CACHE_SECONDS,
        )
        self._sync = _ReplicatedLog(opts.self_address, opts.partner_addresses, conf, self.machine)
        try:
            self._sync.waitBinded()
        except Exception as exc:
            raise Scheduler0Error(
                f"RaftAddress: cannot bind {self.options.self_address}: {exc}"
            ) from exc

    def _load_snapshot(self, path: str) -> Any:
        """The state machine loads the snapshot; pysyncobj gets its own data back.

        pysyncobj 0.3.17 keeps ``(last entry, entry before it, cluster)`` in a
        snapshot, entries being ``(command, index, term)``: on load it replaces
        a journal shorter than two entries by those two, sets lastApplied to
        the last one's index and the members to ``cluster``. A snapshot seeded
        by ``scheduler0 restore`` holds a marker with the backup's raft index
        instead; it becomes two no-op entries at that index and the one before,
        of term 0 (every term a new cluster elects is higher, so the log stays
        ordered by term), and this node's configured members. Every node
        restored from the same file thus starts with the same log and state,
        and the first leader's entries follow the backup's index. pysyncobj
        swallows (and logs) any exception raised here and starts empty, so a
        failure is logged loudly.
        """
        try:
            data = self.machine.load_snapshot(path)
            if not is_seed_marker(data):
                return data
            index = max(2, int(data["raft_index"]))
            noop = bytes([_COMMAND_TYPE.NO_OP])
            opts = self.options
            cluster = {TCPNode(a) for a in [opts.self_address, *opts.partner_addresses]}
            log.info("starting from a restored backup at raft index %d", index)
            return ((noop, index, 0), (noop, index - 1, 0), cluster)
        except Exception:
            log.exception("cannot load the raft snapshot %s: the node starts without it", path)
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the raft member and wait (at most ``timeout`` seconds) until its tick
        thread has unbound the raft port and closed the journal. ``destroy`` alone
        only asks the thread to stop: a node restarted in the same process would
        then bind while the old server still holds the port."""
        sync, self._sync = self._sync, None
        if sync is None:
            return
        sync.destroy()
        thread = sync._SyncObj__thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("raft tick thread still running %.0f s after stop", timeout)

    # -- proposing -----------------------------------------------------------------------

    async def propose(self, command: c.Command, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """See ``ReplicatedLog.propose``."""
        limit = self.options.apply_timeout if timeout == DEFAULT_TIMEOUT else timeout
        outcome = await self._call(
            lambda sync, callback: sync.apply_command(c.encode(command), callback=callback),
            limit,
            "the cluster could not commit the write in time (no quorum or no leader);"
            " it may still be applied",
        )
        result, fail = outcome
        if fail != FAIL_REASON.SUCCESS:
            raise NotCommitted(
                f"the write was not committed ({_FAIL_NAMES.get(fail, fail)});"
                " it may still be applied"
            )
        if isinstance(result, dict) and "error" in result:
            raise error_from_dict(result["error"])
        return result["ok"] if isinstance(result, dict) else result

    async def barrier(self) -> None:
        """A committed no-op: pysyncobj has no ReadIndex."""
        await self.propose(c.Noop(now=time.time()))

    async def add_member(self, address: str) -> None:
        await self._change_membership("add", address)

    async def remove_member(self, address: str) -> None:
        await self._change_membership("remove", address)

    async def _change_membership(self, action: str, address: str) -> None:
        def change(sync: _ReplicatedLog, callback: Callable[[Any, int], None]) -> None:
            if action == "add":
                sync.addNodeToCluster(address, callback=callback)
            else:
                sync.removeNodeFromCluster(address, callback=callback)

        what = f"the membership change ({action} {address})"
        _, fail = await self._call(change, self.options.apply_timeout * 5, f"{what} timed out")
        if fail != FAIL_REASON.SUCCESS:
            raise NotCommitted(f"{what} failed ({_FAIL_NAMES.get(fail, fail)})")

    async def _call(
        self,
        submit: Callable[[_ReplicatedLog, Callable[[Any, int], None]], None],
        timeout: float | None,
        timeout_message: str,
    ) -> tuple[Any, int]:
        """Run one pysyncobj call whose callback fires on the tick thread, and
        await its ``(result, fail reason)`` on this event loop."""
        sync = self._sync
        if sync is None:
            raise NotCommitted("the raft member is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, int]] = loop.create_future()

        def settle(outcome: tuple[Any, int]) -> None:
            if not future.done():
                future.set_result(outcome)

        def callback(result: Any, fail: int) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, (result, fail))

        submit(sync, callback)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise NotCommitted(timeout_message) from None

    # -- status ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def is_leader(self) -> bool:
        return bool(self._sync is not None and self._sync._isLeader())

    def leader_address(self) -> str | None:
        if self._sync is None:
            return None
        leader = self._sync._getLeader()
        return None if leader is None else str(getattr(leader, "address", leader))

    def status(self) -> dict[str, Any]:
        if self._sync is None:
            return {}
        for _ in range(20):
            try:
                raw = self._sync.getStatus()
                break
            except RuntimeError:  # the tick thread mutated a dict we iterate
                continue
        else:
            return {}
        state = {0: "follower", 1: "candidate", 2: "leader"}.get(raw.get("state"), "unknown")
        partners = {
            key.removeprefix("partner_node_status_server_"): value == 2
            for key, value in raw.items()
            if key.startswith("partner_node_status_server_")
        }
        match_index = {
            key.removeprefix("match_idx_server_"): value
            for key, value in raw.items()
            if key.startswith("match_idx_server_")
        }
        leader = raw.get("leader")
        return {
            "state": state,
            "leader": None if leader is None else str(getattr(leader, "address", leader)),
            "has_quorum": bool(raw.get("has_quorum")),
            "term": raw.get("raft_term"),
            "commit_index": raw.get("commit_idx"),
            "applied_index": raw.get("last_applied"),
            "log_length": raw.get("log_len"),
            "partners_connected": partners,
            "partners_match_index": match_index,
            "ready": self.ready,
        }


def raft_password(secret_key: str) -> str:
    """The raft wire password, derived from the cluster secret (never the secret itself)."""
    return hashlib.sha256(b"scheduler0-raft\x00" + secret_key.encode()).hexdigest()
