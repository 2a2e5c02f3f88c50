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
* The transport bounds what a connection may send (``_GuardedTransport``):
  pysyncobj buffers a whole declared message before any password check.
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
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj import journal as pysyncobj_journal
from pysyncobj.atomic_replace import atomicReplace
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.journal import FileJournal, MetaStorer, ResizableFile
from pysyncobj.monotonic import monotonic as raft_clock
from pysyncobj.node import TCPNode
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.serializer import Serializer
from pysyncobj.syncobj import _COMMAND_TYPE, _RAFT_STATE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.tcp_server import TcpServer
from pysyncobj.transport import TCPTransport

from scheduler0.backup import JOURNAL_FILE, SNAPSHOT_FILE, is_seed_marker
from scheduler0.daemon.replication import DEFAULT_TIMEOUT, ReplicatedStateMachine, SnapshotPin
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.snapshot_file import (
    SnapshotCorrupt,
    check_snapshot,
    fsync_dir,
    fsync_file,
)
from scheduler0.errors import NotCommitted, Scheduler0Error, error_from_dict

log = logging.getLogger(__name__)

STARTUP_ELECTION_GRACE = 2.5
"""Seconds a starting member of a multi-node cluster listens for a leader
before it may call an election."""

READ_AHEAD = 2**20
"""Bytes a raft connection reads before it parses what it holds (at least
one whole message)."""

TRANSFER_ACK_SECONDS = 0.5
"""How often a follower receiving a snapshot tells its leader it is there."""

STALL_SECONDS = 0.3
"""A tick longer than this held the raft thread (an apply, a snapshot loaded,
a slow disk): a follower does not count that time against its leader."""

DNS_CACHE_SECONDS = 30.0
"""How long a peer's resolved address is reused for new connections."""

APPEND_BATCH_BYTES = 32 * 2**20
"""pysyncobj's ``appendEntriesBatchSizeBytes``: one append_entries message
carries entries until their size reaches it."""

HANDSHAKE_MAX_BYTES = 4096
"""The largest message a connection may send before it authenticates. The
handshake is two Fernet tokens: a random key (~200 bytes), then the random key
received and the sender's raft address (~300 bytes)."""

HANDSHAKE_SECONDS = 3.0
"""An incoming connection that has not authenticated by then is closed."""

MAX_UNAUTHENTICATED = 16
"""Incoming connections still in their handshake; a new one past this is closed."""

LISTEN_BACKLOG = 64
"""Connections the kernel completes for the raft port before it accepts them."""

ACCEPT_BURST = 32
"""Connections the raft port accepts in one poll."""

SNAPSHOT_SPACING = 20.0
"""A node's own snapshots start at least this many times the last one's
duration apart (and never more often than ``RaftSnapshotInterval``): writing
them takes at most about a twentieth of the node's time, whatever the size of
the state. At 1,000,000 jobs a snapshot takes 2-3 s on 2 cores, so they come
every 40-60 s even under a shorter interval (it was 15 s; it is 60 s)."""

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
    flush_before_ack: bool = True
    max_message_bytes: int = 0
    """The largest message an authenticated peer may send (0: ``max_message_bytes(16)``)."""


def max_message_bytes(max_request_body_mb: float) -> int:
    """The cap on an authenticated raft message, from ``MaxRequestBodyMb``.

    Our largest command is the JobsCreated of one request body; it is counted
    at twice the body (its encoding, before compression, repeats the body's
    fields with their defaults). One append_entries carries entries until
    their total reaches ``APPEND_BATCH_BYTES``, so at most that plus one such
    command; the wire adds zlib (which never grows it by more than a few
    bytes a block) and Fernet's base64 (4/3), and 1 MiB covers the rest.
    Snapshot chunks are 64 KiB. With the default 16 MB bodies: 86 MiB."""
    command = int(max_request_body_mb * 2**20) * 2
    return (APPEND_BATCH_BYTES + command) * 4 // 3 + 2**20


_DURABLE_JOURNALS: set[str] = set()
"""Journal files (by name) flushed to disk before their entries are acknowledged
(``FlushBeforeAck``). By name because pysyncobj builds its journal objects itself."""


class _ReservingFile(ResizableFile):  # type: ignore[misc]
    """pysyncobj's journal file with its growth made safe: ``mmap.resize``
    extends the file sparsely, and the first write to a page that the full file
    system cannot back kills the process with SIGBUS. Reserving the new region
    with ``posix_fallocate`` first turns a full disk into an ``OSError``
    (ENOSPC) raised on the tick thread, before any byte is written, and
    ``on_full`` halts the node cleanly.

    It also remembers what was written since the last ``sync``: pysyncobj never
    msyncs its mmap, so without ``sync`` an entry reaches the disk whenever the
    kernel writes the page back (a power cut loses it even if it was
    acknowledged). Relies on ResizableFile internals: pysyncobj is pinned to
    0.3.17."""

    on_full: ClassVar[dict[str, Callable[[OSError], None]]] = {}
    """By journal file name: what to do when the disk cannot hold it."""

    dirty_end = 0
    """End of the written range not yet synced (0: nothing to sync)."""
    grown = False
    """The file grew since the last sync: its size and blocks must be on disk too."""

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
            self.grown = True
        super().write(offset, values)
        self.dirty_end = max(self.dirty_end, end)

    def close_unsynced(self) -> None:
        getattr(self, "_ResizableFile__mm").close()  # noqa: B009
        self._ResizableFile__f.close()

    def sync(self) -> bool:
        """msync what was written since the last sync (and fdatasync the file if
        it grew); False if there was nothing to do. pysyncobj writes its header
        (page 0) with every entry, so the range starts at 0: msync writes only
        the dirty pages in it. fdatasync, not fsync: the new size and blocks are
        what reading the entries back needs; an fsync also commits the times
        the mmap writes touched, and was seen to wait over a second for the
        file system's journal while the disk was busy."""
        if not self.dirty_end:
            return False
        mm: mmap.mmap = getattr(self, "_ResizableFile__mm")  # noqa: B009
        mm.flush(0, min(self.dirty_end, len(mm)))
        if self.grown:
            os.fdatasync(self._ResizableFile__f.fileno())
            self.grown = False
        self.dirty_end = 0
        return True


class _DurableMetaStorer(MetaStorer):  # type: ignore[misc]
    """pysyncobj's ``journal.meta`` (currentTerm, votedFor, the commit index)
    written so that a power cut keeps it: pysyncobj writes a temporary file and
    renames it over the old one without fsync, so a power cut can leave an
    empty or torn file, which it then reads as term 0 with no vote (it swallows
    the error). Raft needs currentTerm and votedFor on disk before a vote is
    sent or granted (else a node can vote twice in one term: two leaders).
    pysyncobj stores them synchronously before sending, so an fsync here is
    enough. Relies on MetaStorer internals: pysyncobj is pinned to 0.3.17."""

    def storeMeta(self, meta: dict[str, Any]) -> None:
        path: str = self.getPath()
        if path.removesuffix(".meta") not in _DURABLE_JOURNALS:
            super().storeMeta(meta)
            return
        with open(path + ".tmp", "wb") as f:
            f.write(pysyncobj_journal.dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
        fsync_dir(os.path.dirname(path) or ".")


_JOURNAL_MIN_SIZE = 1024
"""ResizableFile's initial size."""


def _cut_torn_tail(path: str) -> None:
    """Cut the journal back to its last whole entry if a power cut tore its tail.

    The kernel writes an mmap's pages back in any order, so after a power cut
    the header may count entries whose pages never reached the disk (zeros, or
    half a record); pysyncobj would then fail to start on an unpack error, or
    read garbage as entries. Each record is ``size, (index, term, command),
    size`` with consecutive indexes: the journal keeps its records up to the
    first that is not whole. With FlushBeforeAck every entry this node
    acknowledged was flushed, so what is cut was never acknowledged by it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    if len(data) < pysyncobj_journal.FIRST_RECORD_OFFSET:
        return
    (last,) = struct.unpack_from("<I", data, pysyncobj_journal.LAST_RECORD_OFFSET_OFFSET)
    limit = min(last, len(data))
    offset = pysyncobj_journal.FIRST_RECORD_OFFSET
    previous: int | None = None
    while offset < last:
        if offset + 4 > limit:
            break
        (size,) = struct.unpack_from("<I", data, offset)
        end = offset + 8 + size
        if size < 16 or end > limit or struct.unpack_from("<I", data, end - 4)[0] != size:
            break
        (index,) = struct.unpack_from("<Q", data, offset + 4)
        if previous is not None and index != previous + 1:
            break
        previous, offset = index, end
    if offset == last:
        return
    log.warning(
        "raft journal %s: its last %d bytes are not whole entries (a power cut before they"
        " were flushed); keeping the entries up to index %s",
        path,
        last - offset,
        previous,
    )
    with open(path, "r+b") as f:
        f.seek(pysyncobj_journal.LAST_RECORD_OFFSET_OFFSET)
        f.write(struct.pack("<I", offset))
        f.flush()
        os.fsync(f.fileno())


class _DurableJournal(FileJournal):  # type: ignore[misc]
    """pysyncobj's file journal, with ``flush`` grouped by the adapter and a
    compaction that cannot lose the snapshot it relies on.

    pysyncobj compacts the journal the tick after it renamed a new snapshot
    over the old one, by rewriting the journal in place. With FlushBeforeAck
    the data directory is fsynced first (the rename must be on disk before the
    entries it covers leave the journal) and the compacted journal is written
    to a new file, fsynced and renamed over the old one, so a power cut leaves
    either the old journal or the new one, never a mix. Relies on FileJournal
    internals: pysyncobj is pinned to 0.3.17."""

    def __init__(self, journalFile: str) -> None:
        self.path = journalFile
        self.durable = journalFile in _DURABLE_JOURNALS
        _cut_torn_tail(journalFile)
        super().__init__(journalFile)
        if self.durable:
            fsync_dir(os.path.dirname(journalFile) or ".")  # the file may just have been created

    @property
    def file(self) -> _ReservingFile:
        journal_file: _ReservingFile = self._FileJournal__journalFile
        return journal_file

    @property
    def dirty(self) -> bool:
        return bool(self.file.dirty_end)

    def sync(self) -> bool:
        """Flush the entries written since the last sync; False if there were none."""
        return self.file.sync()

    def deleteEntriesTo(self, entryTo: int) -> None:
        if not self.durable:
            super().deleteEntriesTo(entryTo)
            return
        directory = os.path.dirname(self.path) or "."
        fsync_dir(directory)  # the snapshot covering the dropped entries is on disk
        entries: list[tuple[bytes, int, int]] = getattr(self, "_FileJournal__journal")  # noqa: B009
        kept = entries[entryTo:]
        records = []
        for command, idx, term in kept:
            data = struct.pack("<QQ", idx, term) + pysyncobj_journal.to_bytes(command)
            size = struct.pack("<I", len(data))
            records.append(size + data + size)
        body = b"".join(records)
        end = pysyncobj_journal.FIRST_RECORD_OFFSET + len(body)
        header = (
            pysyncobj_journal.APP_NAME.ljust(pysyncobj_journal.NAME_SIZE, b"\0")
            + pysyncobj_journal.APP_VERSION.ljust(pysyncobj_journal.VERSION_SIZE, b"\0")
            + struct.pack("<II", pysyncobj_journal.JOURNAL_FORMAT_VERSION, end)
        )
        tmp = self.path + ".compact"
        with open(tmp, "wb") as f:
            f.write(header + body)
            f.flush()
            # Reserved like every growth of the journal (see _ReservingFile);
            # ResizableFile would otherwise extend a small file sparsely.
            os.posix_fallocate(f.fileno(), 0, max(end, _JOURNAL_MIN_SIZE))
            os.fsync(f.fileno())
        self.file.close_unsynced()  # replaced: what it holds is in the new file
        os.replace(tmp, self.path)
        fsync_dir(directory)
        self._FileJournal__journalFile = _ReservingFile(self.path)
        self._FileJournal__journal = list(kept)
        self._FileJournal__currentOffset = end


# FileJournal builds its file, createJournal its journal and FileJournal its meta
# file by these module-level names.
pysyncobj_journal.ResizableFile = _ReservingFile
pysyncobj_journal.FileJournal = _DurableJournal
pysyncobj_journal.MetaStorer = _DurableMetaStorer


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
    sockets to the garbage collector. It also listened with a backlog of 5 and
    accepted one connection a tick, so a few connections opened at once (a
    flood of the port) kept members' connections waiting in the kernel: here
    the backlog is ``LISTEN_BACKLOG`` and a poll accepts up to ``ACCEPT_BURST``
    (the transport closes the ones past its cap at once). Relies on TcpServer
    internals: pysyncobj is pinned to 0.3.17."""

    def bind(self) -> None:
        try:
            super().bind()
        except OSError:
            sock: socket.socket | None = getattr(self, "_TcpServer__socket", None)
            if sock is not None:
                sock.close()
                self._TcpServer__socket = None
            raise
        getattr(self, "_TcpServer__socket").listen(LISTEN_BACKLOG)  # noqa: B009

    def _TcpServer__onNewConnection(self, descr: int, event: int) -> None:
        super()._TcpServer__onNewConnection(descr, event)
        for _ in range(ACCEPT_BURST - 1):
            listening: socket.socket | None = getattr(self, "_TcpServer__socket", None)
            if self._TcpServer__fileno is None or listening is None:
                return
            if not select.select([listening], [], [], 0)[0]:
                return
            super()._TcpServer__onNewConnection(descr, POLL_EVENT_TYPE.READ)


class _Throttled:
    """One WARNING line per ``every`` seconds for a recurring event, counting
    the ones not logged: a flood of the raft port must not flood the log."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._last = -every
        self._dropped = 0

    def note(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            self._dropped += 1
            return
        dropped, self._dropped, self._last = self._dropped, 0, now
        log.warning("raft port: %s (%d more such since the last line)", message, dropped)


_refused = _Throttled(60.0)


class _BoundedConnection(TcpConnection):  # type: ignore[misc]
    """pysyncobj's connection with what it buffers bounded.

    pysyncobj reads a socket until it is drained and buffers a message until
    all the bytes its 4-byte length declares are in; only then does it
    decrypt it (the password check). One unauthenticated connection that
    declares 2 GiB and streams zeros thus held the tick thread in that read
    loop (every write answered 503) and grew the process by hundreds of MB.
    Here a connection that has not authenticated reads at most
    ``HANDSHAKE_MAX_BYTES`` at a time and may declare no more than that; an
    authenticated one may declare up to ``max_message``. A larger (or
    negative) declaration closes the connection as soon as its 4 bytes are in,
    and one read stops once a whole message of the limit is buffered (the
    poller reports the rest on the next poll). Relies on TcpConnection
    internals: pysyncobj is pinned to 0.3.17."""

    authenticated = False
    max_message = HANDSHAKE_MAX_BYTES
    opened = 0.0
    """When the connection was accepted or connected (monotonic)."""
    _recv_size = 2**20

    def bound(self, max_message: int) -> None:
        """Start bounding this connection (it may already be connected)."""
        self.max_message = max_message
        self._recv_size = self._TcpConnection__recvBufferSize
        self._restart()

    def _restart(self) -> None:
        self.authenticated = False
        self.opened = time.monotonic()
        self._TcpConnection__recvBufferSize = HANDSHAKE_MAX_BYTES

    def authenticate(self) -> None:
        """The peer proved it holds the password: lift the handshake limits."""
        self.authenticated = True
        self._TcpConnection__recvBufferSize = self._recv_size

    def connect(self, host: str, port: int) -> bool:
        self._restart()
        return bool(super().connect(host, port))

    def _limit(self) -> int:
        return self.max_message if self.authenticated else HANDSHAKE_MAX_BYTES

    def _declared_ok(self) -> bool:
        """False (and the connection closed) if the buffered message declares
        more than this connection may send."""
        buffer: bytes = self._TcpConnection__readBuffer
        if len(buffer) < 4:
            return True
        (declared,) = struct.unpack_from("i", buffer, 0)
        if 0 <= declared <= self._limit():
            return True
        state = "an authenticated" if self.authenticated else "an unauthenticated"
        _refused.note(
            f"closed {state} connection that declared a {declared}-byte message"
            f" (at most {self._limit()})"
        )
        self.disconnect()
        return False

    def _whole_message_in(self) -> bool:
        buffer: bytes = self._TcpConnection__readBuffer
        if len(buffer) < 4:
            return False
        declared: int = struct.unpack_from("i", buffer, 0)[0]
        return len(buffer) >= 4 + declared

    def _TcpConnection__tryReadBuffer(self) -> None:
        # pysyncobj appends each recv to one bytes object (a copy of all that
        # is buffered) and parses only once the socket is drained: a leader
        # streaming a snapshot kept the socket full, the buffer grew to the
        # limit, and a follower received ~5 MB/s. Reading stops once
        # READ_AHEAD bytes holding a whole message are in; they are parsed
        # and the poller reports the rest at once.
        limit = self._limit() + 4
        while self._declared_ok():
            buffered = len(self._TcpConnection__readBuffer)
            if buffered > limit or (buffered >= READ_AHEAD and self._whole_message_in()):
                break
            if not self._TcpConnection__processRead():
                break
        if self.state != CONNECTION_STATE.DISCONNECTED and self._declared_ok():
            self._TcpConnection__lastReadTime = raft_clock()


class _GuardedTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's transport with its incoming connections bounded: every
    connection is a ``_BoundedConnection``; an incoming one authenticates when
    its second message (the random key this node sent it, and a member's
    address, encrypted with the password) is accepted, an outgoing one when
    the peer's first message decrypts; at most ``MAX_UNAUTHENTICATED`` incoming
    connections may be in their handshake, and one still in it after
    ``HANDSHAKE_SECONDS`` is closed (pysyncobj closed idle connections only
    when they next became readable, so idle and 1-byte ones stayed forever).
    Authenticated ones are idle at most ``connectionTimeout``: every member
    sends each connected partner a keepalive each second, and pysyncobj
    closes a connection it sends on after that long without reading.
    Relies on TCPTransport internals: pysyncobj is pinned to 0.3.17."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        self._max_message: int = syncObj.max_message_bytes
        super().__init__(syncObj, selfNode, otherNodes)
        syncObj.addOnTickCallback(self._reap)

    def _createServer(self) -> None:
        super()._createServer()
        self._server.__class__ = _ClosingTcpServer

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        conn = self._connections.get(node)
        if conn is not None and not isinstance(conn, _BoundedConnection):
            conn.__class__ = _BoundedConnection
            conn.bound(self._max_message)

    def _onNewIncomingConnection(self, conn: Any) -> None:
        conn.__class__ = _BoundedConnection
        conn.bound(self._max_message)
        if len(self._unknownConnections) >= MAX_UNAUTHENTICATED:
            _refused.note(
                f"closed a new connection: {MAX_UNAUTHENTICATED} are already in their handshake"
            )
            conn.disconnect()
            return
        super()._onNewIncomingConnection(conn)

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        super()._onIncomingMessageReceived(conn, message)
        if conn.state != CONNECTION_STATE.DISCONNECTED and conn not in self._unknownConnections:
            conn.authenticate()

    def _onOutgoingMessageReceived(self, conn: Any, message: Any) -> None:
        super()._onOutgoingMessageReceived(conn, message)
        if conn.state != CONNECTION_STATE.DISCONNECTED:
            conn.authenticate()

    def _reap(self) -> None:
        """Close the incoming connections whose handshake took too long."""
        deadline = time.monotonic() - HANDSHAKE_SECONDS
        for conn in list(self._unknownConnections):
            if conn.opened < deadline:
                _refused.note(
                    f"closed a connection that did not authenticate within {HANDSHAKE_SECONDS:g} s"
                )
                conn.disconnect()  # its disconnect callback forgets it


class _KeepaliveTransport(_GuardedTransport):
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

    def _keepalive_tick(self) -> None:
        now = time.monotonic()
        if now - self._last_keepalive < self._KEEPALIVE_EVERY:
            return
        self._last_keepalive = now
        for node in list(self._nodes):
            connection = self._connections.get(node)
            if connection is not None and connection.state == CONNECTION_STATE.CONNECTED:
                self.send(node, {"type": "scheduler0_keepalive"})


class _FlushingTransport(_KeepaliveTransport):
    """Holds a follower's replies to append_entries (``next_node_idx``, which
    tells the leader the entries are stored) while its journal has entries not
    yet on disk; ``release`` flushes the journal once and sends them. pysyncobj
    handles every message that one poll read before the tick ends, so one flush
    covers every append_entries of a tick, however many there were. Replies keep
    their order (a reply sent while others are held is held behind them).
    Relies on TCPTransport internals: pysyncobj is pinned to 0.3.17."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self._held: list[tuple[Any, Any]] = []
        self.stopped: Callable[[], bool] = lambda: False
        """The node failed: drop what is held (its journal may not hold it)."""

    def _journal(self) -> Any:
        return self._syncObj._SyncObj__raftLog

    def send(self, node: Any, message: Any) -> bool:
        if isinstance(message, dict) and message.get("type") == "next_node_idx":
            journal = self._journal()
            if getattr(journal, "durable", False) and (self._held or journal.dirty):
                self._held.append((node, message))
                return True
        return bool(super().send(node, message))

    def release(self) -> None:
        """Flush the journal if it holds unflushed entries, then send the held replies."""
        journal = self._journal()
        if getattr(journal, "durable", False):
            journal.sync()
        held, self._held = self._held, []
        if self.stopped():
            return
        for node, message in held:
            super().send(node, message)


def incoming_snapshot_path(snapshot: str) -> str:
    """Where pysyncobj writes a snapshot it receives from the leader."""
    return snapshot + ".1.tmp"


def outgoing_snapshot_path(snapshot: str) -> str:
    """Where this node writes its own snapshot before renaming it over the last."""
    return snapshot + ".tmp"


_BACKGROUND = -3
"""``Serializer.__pid`` while a snapshot is written on its own thread: non-zero,
so pysyncobj starts no other and sends no snapshot (``getTransmissionData``)."""


SAVE_RETRY_FIRST = 1.0
SAVE_RETRY_MAX = 60.0
"""After this node's own snapshot failed (a full disk: each attempt copies the
whole database, and pysyncobj asked again every tick, ~27 tracebacks in a
burst), the next waits 1 s, then twice as long after each failure in a
row, up to 60 s; the traceback is logged for the first failure only."""


class _BackgroundSave:
    """One snapshot of this node's own, written beside the raft thread.

    The state machine pinned the state on the raft thread (``pin_snapshot``);
    here a thread writes it to the temporary file, fsyncs it (FlushBeforeAck),
    renames it over the snapshot and fsyncs the directory. The rename is made
    under ``rename_lock`` and only if the save was not cancelled meanwhile: a
    snapshot received from the leader (renamed over the same file under the
    same lock, after cancelling this save) must never be replaced by this
    older one. A failed or cancelled save removes its temporary file and
    leaves the snapshot and the journal as they were."""

    def __init__(
        self,
        pin: SnapshotPin,
        tmp: str,
        final: str,
        durable: bool,
        rename_lock: threading.Lock,
        failed_before: int = 0,
    ) -> None:
        self.failed_before = failed_before
        """Saves that failed in a row before this one (their traceback is logged once)."""
        self.pin = pin
        self.tmp = tmp
        self.final = final
        self.durable = durable
        self.rename_lock = rename_lock
        self.renamed = False
        self.seconds = 0.0
        """How long the copy, seal, fsyncs and rename took (once renamed)."""
        self.thread = threading.Thread(target=self._run, name="raft-snapshot", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.pin.cancel()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.pin.write(self.tmp)
            if self.durable:
                fsync_file(self.tmp)
            with self.rename_lock:
                if self.pin.cancelled:
                    raise _Superseded
                atomicReplace(self.tmp, self.final)
                self.renamed = True
            if self.durable:
                fsync_dir(os.path.dirname(self.final) or ".")
            self.seconds = time.monotonic() - started
        except Exception as exc:
            if self.pin.cancelled:
                log.info("raft snapshot not kept: cancelled (%s)", type(exc).__name__)
            elif self.failed_before:
                log.warning(
                    "cannot write the raft snapshot %s, again (%d failed in a row): %s",
                    self.tmp,
                    self.failed_before + 1,
                    exc,
                )
            else:
                log.exception("cannot write the raft snapshot %s", self.tmp)
            for leftover in (self.tmp, self.tmp + "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(leftover)


class _Superseded(Exception):
    """The save was cancelled before its rename."""


class _CheckedSerializer(Serializer):  # type: ignore[misc]
    """pysyncobj's snapshot serializer, with a snapshot received from the
    leader checked before it may replace this node's current one.

    pysyncobj sends a snapshot in 64 KiB chunks, each marked first and/or last;
    a follower truncates its temporary file on a first chunk, appends the
    others and renames the file over its snapshot on the last. Neither side
    knows which transfer a chunk belongs to: a leader keeps its transfer to a
    node (an open file and its position) after it lost leadership, and
    resumes it, without a first chunk, when it wins again. A follower that
    meanwhile started another leader's transfer appends the rest of the old
    one to it: the file it renames is torn (another leader's beginning, this
    one's end and seal), and pysyncobj had already renamed it over the only
    snapshot the node's journal continues, so the node could not start again.

    Here the received file is checked (``check_snapshot``) before the rename:
    a torn or damaged one is deleted with a WARNING and the node keeps its
    snapshot and journal; the leader then finds the node behind and sends a
    snapshot again. ``cancel_outgoing`` (on winning an election) makes every
    transfer a new leader sends start from the first chunk, and
    ``abort_incoming`` (when the leader changes) drops a half-received one.
    With FlushBeforeAck the checked file is also fsynced before the rename, so
    a power cut cannot leave a torn file where the previous snapshot was.
    Relies on Serializer internals: pysyncobj is pinned to 0.3.17."""

    durable = False
    """Set from FlushBeforeAck when the SyncObj is built."""

    _background: _BackgroundSave | None = None
    """This node's own snapshot being written, if any."""

    _rename_lock = threading.Lock()
    """Held around every rename over the snapshot file (each node's own, set
    when built)."""

    _failed_saves = 0
    """This node's own snapshots that failed in a row (a full disk, ...)."""
    _retry_at = 0.0
    """Monotonic time before which no new snapshot is started after a failure."""

    on_saved: Callable[[float], None] = staticmethod(lambda seconds: None)
    """Called on the raft thread with the duration of each snapshot of this
    node's own once it is in place (set when built: ``_space_snapshots``)."""

    @property
    def _pid(self) -> int:
        """pysyncobj's serialization state: 0 idle, -1 done, -2 failed (or ours)."""
        pid: int = getattr(self, "_Serializer__pid")  # noqa: B009
        return pid

    @_pid.setter
    def _pid(self, value: int) -> None:
        setattr(self, "_Serializer__pid", value)  # noqa: B010

    def serialize(self, data: Any, id: int) -> None:
        """Start this node's snapshot at entry ``id`` without holding the raft
        thread for the copy: the state machine pins the state here (the
        ``serializer`` callable, milliseconds), a thread writes it
        (``_BackgroundSave``), and ``checkSerializing`` says SERIALIZING until
        that thread ends, then SUCCESS (pysyncobj compacts the journal up to
        ``id``) or FAILED. pysyncobj's own ``serialize`` writes synchronously."""
        if self._pid != 0:
            return
        if self._failed_saves and time.monotonic() < self._retry_at:
            return  # backing off: each attempt copies the whole database
        self._Serializer__currentID = id
        final: str = self._Serializer__fileName
        try:
            pin: SnapshotPin = self._Serializer__serializer(final, data[1:])
        except Exception:
            log.exception("cannot start a raft snapshot at index %s", id)
            self._pid = -2  # FAILED, reported by checkSerializing
            return
        save = _BackgroundSave(
            pin,
            outgoing_snapshot_path(final),
            final,
            self.durable,
            self._rename_lock,
            failed_before=self._failed_saves,
        )
        self._background = save
        self._pid = _BACKGROUND
        save.start()

    def checkSerializing(self) -> tuple[int, Any]:
        save = self._background
        if save is not None and self._pid == _BACKGROUND:
            if save.thread.is_alive():
                return SERIALIZER_STATE.SERIALIZING, self._Serializer__currentID
            self._background = None
            if save.renamed:
                self._failed_saves = 0
                self.cancel_outgoing()  # transfers of the previous file start anew
                self._pid = -1  # SUCCESS
                self.on_saved(save.seconds)
            else:
                if not save.pin.cancelled:
                    self._failed_saves += 1
                    backoff = min(SAVE_RETRY_MAX, SAVE_RETRY_FIRST * 2 ** (self._failed_saves - 1))
                    self._retry_at = time.monotonic() + backoff
                self._pid = -2  # FAILED
        state: tuple[int, Any] = super().checkSerializing()
        return state

    def stop_background(self, timeout: float) -> None:
        """Cancel this node's snapshot being written (it is not renamed) and wait
        up to ``timeout`` seconds for its thread (it stops within one backup step)."""
        save = self._background
        if save is None:
            return
        save.cancel()
        save.thread.join(timeout)
        if save.thread.is_alive():
            log.warning("raft snapshot thread still running %.0f s after stop", timeout)

    @property
    def _incoming(self) -> Any:
        """The file the snapshot being received is written to, or None."""
        return getattr(self, "_Serializer__incomingTransmissionFile")  # noqa: B009

    @_incoming.setter
    def _incoming(self, file: Any) -> None:
        setattr(self, "_Serializer__incomingTransmissionFile", file)  # noqa: B010

    def abort_incoming(self) -> None:
        """Forget a half-received snapshot (its file is deleted)."""
        incoming, self._incoming = self._incoming, None
        if incoming is None:
            return
        incoming.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(incoming_snapshot_path(self._Serializer__fileName))

    def cancel_outgoing(self) -> None:
        """Forget every transfer this node was sending: the next starts from the first chunk."""
        transmissions: dict[Any, dict[str, Any]] = self._Serializer__transmissions
        for transmission in transmissions.values():
            if "file" in transmission:
                transmission["file"].close()
        transmissions.clear()

    def getTransmissionData(self, transmissionID: Any) -> Any:
        """pysyncobj's, with the file of a finished transfer closed (pysyncobj
        forgets it open, to be closed whenever the garbage collector runs)."""
        transmissions: dict[Any, dict[str, Any]] = self._Serializer__transmissions
        sending = transmissions.get(transmissionID)
        data = super().getTransmissionData(transmissionID)
        if sending is not None and transmissions.get(transmissionID) is not sending:
            sending["file"].close()  # the last chunk was read (or reading failed)
        return data

    def setTransmissionData(self, data: Any) -> bool:
        """Store one received chunk; True once a whole, checked snapshot
        replaced the current one (pysyncobj then loads it)."""
        if data is None:
            return False
        chunk, is_first, is_last = data
        final: str = self._Serializer__fileName
        path = incoming_snapshot_path(final)
        if is_first:
            self.abort_incoming()
            try:
                self._incoming = open(path, "wb")  # noqa: SIM115
            except OSError:
                log.exception("cannot create %s for the snapshot the leader sends", path)
                return False
        incoming = self._incoming
        if incoming is None:
            return False  # the rest of a transfer whose first chunk this node did not take
        try:
            incoming.write(chunk)
        except OSError:
            log.exception("cannot write the snapshot the leader sends to %s", path)
            self.abort_incoming()
            return False
        if not is_last:
            return False
        incoming.close()
        self._incoming = None
        try:
            check_snapshot(path)
        except SnapshotCorrupt as exc:
            log.warning(
                "the snapshot received from the leader is incomplete or damaged (%s):"
                " discarded; this node keeps its snapshot and journal and the leader"
                " sends it a snapshot again",
                exc,
            )
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            return False
        if self.durable:
            fsync_file(path)
        with self._rename_lock:  # held by a save of our own only around its rename
            save = self._background
            if save is not None:
                save.cancel()  # older than the leader's: it must not replace it
            try:
                atomicReplace(path, final)
            except OSError:
                log.exception("cannot rename the received snapshot %s over %s", path, final)
                return False
        return True


def _drop_unfinished_snapshots(snapshot: str) -> None:
    """Delete a snapshot this node was receiving when it stopped: it never
    became its snapshot (only a whole, checked one is renamed over it), and
    the leader sends a whole one again if the node needs it. Likewise one it
    was writing itself (the journal still holds what it would have covered)."""
    path = incoming_snapshot_path(snapshot)
    if os.path.exists(path):
        log.warning("discarding %s: a snapshot this node had not wholly received", path)
        os.remove(path)
    path = outgoing_snapshot_path(snapshot)
    if os.path.exists(path):
        log.info("discarding %s: a snapshot this node had not finished writing", path)
        os.remove(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + "-journal")


def _transport_with_checked_snapshots(
    syncObj: Any, selfNode: Any, otherNodes: Any
) -> _FlushingTransport:
    """Build the transport, first turning the SyncObj's serializer into a
    ``_CheckedSerializer``. pysyncobj builds both in ``SyncObj.__init__``
    (the serializer just before the transport), before its tick thread runs;
    the serializer holds nothing yet, so changing its class loses nothing."""
    serializer = syncObj._SyncObj__serializer
    serializer.__class__ = _CheckedSerializer
    serializer.durable = syncObj._SyncObj__conf.journalFile in _DURABLE_JOURNALS
    serializer._rename_lock = threading.Lock()
    serializer.on_saved = _space_snapshots(syncObj._SyncObj__conf)
    return _FlushingTransport(syncObj, selfNode, otherNodes)


def _space_snapshots(conf: Any) -> Callable[[float], None]:
    """What to do once a snapshot of this node's own took ``seconds``: start the
    next one no sooner than ``SNAPSHOT_SPACING`` times that, nor sooner than
    the configured interval (pysyncobj reads ``logCompactionMinTime`` at each
    tick). The entries threshold still starts one earlier."""
    interval: float = conf.logCompactionMinTime

    def spaced(seconds: float) -> None:
        wanted = max(interval, SNAPSHOT_SPACING * seconds)
        if abs(wanted - conf.logCompactionMinTime) > 0.25 * conf.logCompactionMinTime:
            log.info(
                "raft snapshots now at most every %.0f s (the last took %.1f s)", wanted, seconds
            )
        conf.logCompactionMinTime = wanted

    return spaced


class _ReplicatedLog(SyncObj):  # type: ignore[misc]
    """pysyncobj's SyncObj with the journal flushed before what it holds is
    acknowledged (FlushBeforeAck), at most twice a tick however many entries:

    * a leader appends the entries of a tick (and sends them to its followers)
      in ``_checkCommandsToApply``, then runs the tick callbacks, then polls;
      its flush is the last tick callback, so it runs while the followers store
      and flush the same entries, and the next tick counts the leader's own copy
      toward the commit index only after it;
    * a follower appends in the poll (one append_entries message after the
      other); after the poll its journal is flushed once and the held replies
      are sent (``_FlushingTransport``). Entries a leader appended during the
      poll (its no-op on winning an election) are flushed there too.

    Relies on SyncObj internals (the order of ``_onTick``): pysyncobj is pinned
    to 0.3.17."""

    def __init__(
        self,
        self_address: str,
        partners: list[str],
        conf: Any,
        machine: ReplicatedStateMachine,
        max_message_bytes: int,
    ) -> None:
        self._machine = machine
        self.max_message_bytes = max_message_bytes
        """Read by the transport, which pysyncobj builds in ``__init__``."""
        self._has_partners = bool(partners)
        self.tick_calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        """Calls to make on the tick thread, at the start of its next tick
        (pysyncobj's state is that thread's alone)."""
        self._transfer_acked: dict[Any, float] = {}
        """When this follower last told a leader sending it a snapshot that it is there."""
        load = conf.deserializer

        def load_keeping_the_journal(path: str) -> Any:
            data = load(path)
            self._start_journal_at(data[0], data[1])
            return data

        conf.deserializer = load_keeping_the_journal
        super().__init__(
            self_address, partners, conf, transportClass=_transport_with_checked_snapshots
        )
        self.addOnTickCallback(self._flush_journal)
        if partners:
            # pysyncobj has no pre-vote: a restarted node that times out before
            # the leader has reconnected to it campaigns with a higher term and
            # deposes a healthy leader when it connects. Give the leader time
            # to reach us first (it retries every connectionRetryTime).
            self._SyncObj__raftElectionDeadline = raft_clock() + STARTUP_ELECTION_GRACE

    def _start_journal_at(self, last: Any, before: Any) -> None:
        """Drop the journal's entries before a snapshot being loaded, when the
        journal holds the snapshot's last two entries further on.

        pysyncobj keeps the journal only if it starts exactly at the snapshot's
        last two entries, and otherwise clears it. A node stopped (or killed)
        after a snapshot was renamed into place but before the next tick
        compacted the journal for it holds older entries first: pysyncobj then
        dropped every committed entry after the snapshot with them (writes
        acknowledged, gone after the restart; a test caught it on a busy
        machine). Here the journal is compacted as that tick would have done,
        so pysyncobj keeps the rest. A journal without those entries (behind
        the snapshot, or a snapshot received from the leader) is left to
        pysyncobj, which clears it as before."""
        journal = self._SyncObj__raftLog
        if len(journal) < 2:
            return
        position = before[1] - journal[0][1]
        if position <= 0 or position + 1 >= len(journal):
            return
        if journal[position] != before or journal[position + 1] != last:
            return
        log.info(
            "journal compacted at start to the snapshot's index %d (%d older entries dropped)",
            last[1],
            position,
        )
        journal.deleteEntriesTo(position)

    def _SyncObj__onBecomeLeader(self) -> None:
        # A transfer this node left half-sent when it last lost leadership
        # must not be resumed: the follower may have started another since.
        self._SyncObj__serializer.cancel_outgoing()
        super()._SyncObj__onBecomeLeader()

    def _SyncObj__onLeaderChanged(self) -> None:
        self._SyncObj__serializer.abort_incoming()
        super()._SyncObj__onLeaderChanged()

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        """pysyncobj's handler, then a sign of life to a leader sending a snapshot.

        A follower answers a snapshot's chunks only after the last one, and a
        connection on which nothing was read for ``connectionTimeout`` (3.5 s)
        is closed by the side sending on it. A snapshot of hundreds of MB takes
        longer than that to send: the leader closed the connection mid-way,
        cancelled the transfer and started it again after reconnecting, and a
        node behind the leader's snapshot (a node restarted at a million jobs)
        never caught up. So while chunks arrive the follower answers at most
        every ``TRANSFER_ACK_SECONDS`` with a ``next_node_idx`` that neither
        succeeds nor resets (what pysyncobj itself answers to each chunk of a
        large entry): the leader only notes that it heard from this node."""
        super()._SyncObj__onMessageReceived(node, message)
        serialized = message.get("serialized") if isinstance(message, dict) else None
        if not serialized or message.get("type") != "append_entries" or serialized[2]:
            return
        now = raft_clock()
        if now - self._transfer_acked.get(node, 0.0) < TRANSFER_ACK_SECONDS:
            return
        self._transfer_acked[node] = now
        self._SyncObj__transport.send(
            node,
            {
                "type": "next_node_idx",
                "next_node_idx": self._SyncObj__getCurrentLogIndex() + 1,
                "reset": False,
                "success": False,
            },
        )

    def _flush_journal(self) -> None:
        journal = self._SyncObj__raftLog
        if getattr(journal, "durable", False):
            journal.sync()

    def _onTick(self, timeToWait: float = 0.0) -> None:
        # Normally a no-op (the last tick flushed): after a tick that raised
        # before its callbacks ran, this keeps the leader's unflushed entries
        # from counting toward the commit index computed next.
        self._flush_journal()
        while True:
            try:
                self.tick_calls.get_nowait()()
            except queue.Empty:
                break
        started = raft_clock()
        try:
            super()._onTick(timeToWait)
            self._machine.flush_due()
        finally:
            self._SyncObj__transport.release()
            self._after_stall(raft_clock() - started - timeToWait)

    def _after_stall(self, busy: float) -> None:
        """A follower whose tick held the raft thread for ``busy`` seconds
        listens for its leader a full election timeout from now.

        pysyncobj checks the election deadline at the start of a tick, before
        it reads the messages that arrived meanwhile: a follower busy longer
        than the timeout (applying a backlog, loading a snapshot of hundreds of
        MB) called an election although its leader's heartbeats were waiting
        in the socket, and with no pre-vote its higher term deposed the
        leader. At a million jobs a cold restart went through dozens of terms
        in a minute, and a follower that needed the leader's snapshot never
        received one whole. Liveness only: a leader that really died is
        noticed one timeout later."""
        if busy <= STALL_SECONDS or not self._has_partners:
            return
        if self._SyncObj__raftState != _RAFT_STATE.FOLLOWER:
            return
        self._SyncObj__raftElectionDeadline = max(
            self._SyncObj__raftElectionDeadline,
            raft_clock() + self._SyncObj__generateRaftTimeout(),
        )

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


ProposalObserver = Callable[[str, str, float], None]
"""Told of each decided proposal: its command type, its outcome (``ok``,
``refused``, ``not_committed``, ``failed``) and the seconds it took."""


class RaftLog:
    """The ``ReplicatedLog`` on pysyncobj: one raft member of the cluster.

    Owns the SyncObj, its tick thread, its port and its journal and snapshot
    files. Keeps pysyncobj's conventions inside: its ``(result, fail reason)``
    callbacks run on the tick thread and are hopped onto the caller's event
    loop here; callers only see awaitables, results and typed errors.
    Never applies anything itself: the ``ReplicatedStateMachine`` does, on the
    tick thread, in log order.
    """

    def __init__(
        self,
        options: RaftOptions,
        machine: ReplicatedStateMachine,
        on_proposed: ProposalObserver | None = None,
    ) -> None:
        self.options = options
        self.machine = machine
        self._on_proposed = on_proposed
        """Told each proposal's command type, outcome and seconds (the node's metrics)."""
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
        _drop_unfinished_snapshots(str(opts.data_dir / SNAPSHOT_FILE))
        journal = str(opts.data_dir / JOURNAL_FILE)
        _ReservingFile.on_full[journal] = self._journal_full
        if opts.flush_before_ack:
            _DURABLE_JOURNALS.add(journal)
        else:
            _DURABLE_JOURNALS.discard(journal)
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
            appendEntriesBatchSizeBytes=APPEND_BATCH_BYTES,
            sendBufferSize=2**20,
            recvBufferSize=2**20,
            journalFile=journal,
            fullDumpFile=str(opts.data_dir / SNAPSHOT_FILE),
            serializer=self._pin_snapshot,
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
        self._sync = _ReplicatedLog(
            opts.self_address,
            opts.partner_addresses,
            conf,
            self.machine,
            opts.max_message_bytes or max_message_bytes(16.0),
        )
        transport: _FlushingTransport = self._sync._SyncObj__transport
        transport.stopped = lambda: (
            self.failure is not None or getattr(self.machine, "halted", None) is not None
        )
        try:
            self._sync.waitBinded()
        except Exception as exc:
            raise Scheduler0Error(
                f"RaftAddress: cannot bind {self.options.self_address}: {exc}"
            ) from exc

    def _pin_snapshot(self, path: str, data: Any) -> SnapshotPin:
        """On the raft thread: the state machine pins its state for a snapshot
        at the last applied entry; ``_CheckedSerializer.serialize`` writes it on
        its own thread. With FlushBeforeAck the file is fsynced before it is
        renamed over the previous one, the directory after (and again before
        the journal entries it covers are dropped: ``deleteEntriesTo``)."""
        return self.machine.pin_snapshot(data)

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
        swallows (and logs) any exception raised here and goes on without the
        snapshot, so the state machine halts this node on a snapshot it cannot
        load (``StateMachine.load_snapshot``): the node exits instead.
        """
        try:
            if self.options.flush_before_ack:
                # A snapshot received from the leader was written and renamed by
                # pysyncobj without fsync: make it durable before this node
                # replies that it holds it (and drops its journal for it).
                fsync_file(path)
                fsync_dir(os.path.dirname(path) or ".")
            data = self.machine.load_snapshot(path)
            if not is_seed_marker(data):
                return data
            index = max(2, int(data["raft_index"]))
            noop = bytes([_COMMAND_TYPE.NO_OP])
            opts = self.options
            cluster = {TCPNode(a) for a in [opts.self_address, *opts.partner_addresses]}
            log.info("starting from a restored backup at raft index %d", index)
            return ((noop, index, 0), (noop, index - 1, 0), cluster)
        except SnapshotCorrupt:
            raise  # the state machine logged it and halted
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
        # A snapshot being written is dropped (its journal entries were kept).
        sync._SyncObj__serializer.stop_background(timeout)

    # -- proposing -----------------------------------------------------------------------

    async def propose(self, command: c.Command, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """See ``ReplicatedLog.propose``."""
        started = time.perf_counter()
        verdict = "failed"
        try:
            result = await self._propose(command, timeout)
            verdict = "ok"
            return result
        except NotCommitted:
            verdict = "not_committed"
            raise
        except Scheduler0Error:
            verdict = "refused"
            raise
        finally:
            if self._on_proposed is not None:
                self._on_proposed(command.type_name, verdict, time.perf_counter() - started)

    async def _propose(self, command: c.Command, timeout: float | None) -> Any:
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

    async def hand_over_leadership(self, timeout: float) -> None:
        """Make the most caught-up connected follower leader (raft's
        TimeoutNow), and wait until this node no longer leads and another
        does. Raises ``NotCommitted`` if no follower is caught up and
        connected, or if no other leader is seen within ``timeout``."""

        def transfer(sync: _ReplicatedLog, callback: Callable[[Any, int], None]) -> None:
            sync.tick_calls.put(lambda: sync.transferLeadership(None, callback))

        _, fail = await self._call(transfer, timeout, "the leadership hand-over timed out")
        if fail != FAIL_REASON.SUCCESS:
            raise NotCommitted(
                "no follower is connected and caught up to take over the leadership"
                f" ({_FAIL_NAMES.get(fail, fail)}); retry shortly"
            )
        deadline = time.monotonic() + timeout
        while self.is_leader() or self.leader_address() in (None, self.options.self_address):
            if time.monotonic() >= deadline:
                raise NotCommitted(f"no other node took over the leadership within {timeout:g} s")
            await asyncio.sleep(0.05)

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
