"""The state machine: applies commands to this node's SQLite replica.

Rules every handler keeps (the raft log depends on them):

* Deterministic. A handler reads only the command and the database: never the
  clock, randomness or node-local settings. Row ids come from the database in
  log order, so they are the same on every node.
* One transaction per command. A handler that finds the command invalid
  raises a ``Scheduler0Error``; ``apply`` rolls the transaction back and
  returns the error as a value. ``apply`` itself never raises: an exception
  escaping a replicated method is retried by pysyncobj on every tick, forever,
  on every node.
* Results are small: they are computed on every node but only the proposer
  reads them.

With ``fire_buffer_seconds`` (a node's: ``FIRE_BUFFER_SECONDS``), fires and
results are applied to a ``FireBuffer`` and written together (``flush``):
before any other command, before a snapshot is pinned, before a read through
``Queries`` (``settle``), and once due on the log's tick (``flush_due``) or by
its size. The database after a flush is the one the commands applied one by
one leave; a flush that is due may keep the newest rows without a result
for the next one (``FireBuffer.write``), and every other flush writes them.

After a command commits, ``on_change`` hears which jobs or which assignment
changed, so the scheduler can refresh what it holds in memory. That is a side
effect outside the replicated state and may lag it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import pickle
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

import orjson

from scheduler0.daemon.metrics import Metrics
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state import handlers  # noqa: F401  (registers every handler)
from scheduler0.daemon.state.apply import HANDLERS, ApplyContext, Assignment, Change
from scheduler0.daemon.state.fire_buffer import FireBuffer
from scheduler0.daemon.state.idempotency import KEYED, apply_once
from scheduler0.daemon.state.schema import BUCKETS, add_missing_columns, connect
from scheduler0.daemon.state.snapshot_file import SnapshotCorrupt, seal_snapshot, verify_snapshot
from scheduler0.errors import (
    Scheduler0Error,
)

log = logging.getLogger(__name__)

ChangeListener = Callable[[Change, Any], None]
"""``(kind, detail)`` after each commit; the kinds and their details are ``Change``'s."""


class AssignmentView(Protocol):
    """The bucket assignment as a node has applied it (``StateMachine`` is one):
    bucket ``i`` is owned by node ``owners[i]`` since ``epoch``."""

    @property
    def epoch(self) -> int: ...

    @property
    def owners(self) -> list[int]: ...


class StateMachine:
    """This node's replica: applies committed commands to its SQLite database.

    Owns the database file's one writer connection and the applied bucket
    assignment (``epoch``, ``owners``). The log calls ``apply`` for every
    committed entry in log order, and ``pin_snapshot``/``load_snapshot``, all
    on the log's one apply thread (the ``ReplicatedStateMachine`` interface);
    a pinned snapshot is written on another thread, on its own connection.
    Each command runs its handler from ``state/handlers/`` in one transaction.

    Must never: read the clock, randomness or node-local settings in apply;
    raise out of ``apply`` (pysyncobj would retry the entry forever, on every
    node); apply a command twice (the node rebuilds the database from snapshot
    plus journal at every start); serve reads (``Queries`` does, on their own
    connections).
    """

    def __init__(
        self,
        db_path: Path,
        on_change: ChangeListener | None = None,
        metrics: Metrics | None = None,
        fire_buffer_seconds: float = 0.0,
    ) -> None:
        self.db_path = db_path
        self._metrics = metrics
        self._conn = connect(db_path, writer=True)
        self._conn.row_factory = None  # plain tuples: apply reads by position
        self._on_change = on_change or (lambda kind, detail: None)
        self._lock = threading.Lock()
        self.assignment = Assignment()
        self.applied_commands = 0
        self.halted: str | None = None
        """Why this replica stopped applying (its environment failed), or None."""
        self._digest = bytes(32)
        self.checkpoints: deque[tuple[int, str]] = deque(maxlen=32)
        self._applied_index = 0
        """``meta.applied_index``: the index of the last command committed."""
        self._buffer = FireBuffer()
        self._taken = 0
        """Commands held so far (``_hold``)."""
        self._written = 0
        """Of those, the ones written (or replayed) when a flush ended."""
        self.fire_buffer_seconds = fire_buffer_seconds
        """How long fires and results may be held before they are written
        (``fire_buffer.py``); 0: each command is written as it is applied."""
        self._load_assignment()

    @property
    def epoch(self) -> int:
        return self.assignment.epoch

    @property
    def owners(self) -> list[int]:
        return self.assignment.owners

    # -- the replicated entry point -------------------------------------------------

    def apply(self, payload: bytes, index: int | None = None) -> dict[str, Any]:
        """Apply one encoded command. Returns ``{"ok": result}`` or ``{"error": {...}}``.

        ``index`` is the entry's position in the log (the same on every node).
        A command that commits records it as ``meta.applied_index`` in its own
        transaction, so any read transaction sees the state together with the
        index of the last command in it (what ``GET /backup`` copies).

        Raises ``ApplyHalted`` (and keeps raising it) once this node's own
        environment failed an apply (disk full, I/O error, corruption, no
        memory): the entry is then neither applied nor skipped, so this replica
        stops rather than diverge from the others.
        """
        with self._lock:
            if self.halted is not None:
                raise ApplyHalted(self.halted)
            outcome, ctx, type_name, dumped = self._apply(payload, index)
            self._chain(payload, _dumped(outcome) if dumped is None else dumped)
        if ctx is not None:
            if self._metrics is not None and type_name:
                self._metrics.apply_duration.labels(type_name).observe(ctx.elapsed)
            if "ok" in outcome:
                for kind, detail in ctx.changes:
                    self._notify(kind, detail)
        return outcome

    def _apply(
        self, payload: bytes, index: int | None
    ) -> tuple[dict[str, Any], ApplyContext | None, str, bytes | None]:
        """The outcome, and its ``_dumped`` form when it was made already."""
        self.applied_commands += 1
        try:
            command = c.decode(payload)
        except c.UndecodableCommand as exc:
            log.error("skipping undecodable command: %s", exc)
            error = Scheduler0Error(f"undecodable command: {exc}").to_dict()
            return {"error": error}, None, "", None
        except (c.CommandNotReadableHere, MemoryError) as exc:
            self._halt("an entry", exc)
        ctx = ApplyContext(self._conn, self.assignment)
        if self.fire_buffer_seconds > 0:
            held = self._hold(ctx, command, index, payload)
            if held is not None:
                outcome, dumped = held
                return outcome, ctx, command.type_name, dumped
            self._flush(applying=True)
            self._buffer = FireBuffer()  # this command may change what it knew of jobs
        return self._apply_now(ctx, command, index), ctx, command.type_name, None

    def _apply_now(
        self, ctx: ApplyContext, command: c.Command, index: int | None, *, applying: bool = True
    ) -> dict[str, Any]:
        """Apply ``command`` in its own transaction: its outcome (``applying``:
        it is the entry being applied, not one held and replayed)."""
        db = self._conn
        # Restored if the command rolls back: AssignmentChanged sets it before
        # the commit, and a replica must not judge fires by owners it never stored.
        assigned = (self.assignment.epoch, self.assignment.owners)
        started = time.perf_counter()
        try:
            handler = HANDLERS[type(command)]
            db.execute("BEGIN")
            if isinstance(command, KEYED) and command.idempotency is not None:
                key = c.IdempotencyKey(*command.idempotency)
                result = apply_once(ctx, command.now, key, lambda: handler(ctx, command))
            else:
                result = handler(ctx, command)
            self._commit(index)
        except Scheduler0Error as exc:
            db.execute("ROLLBACK")
            self.assignment.epoch, self.assignment.owners = assigned
            return {"error": exc.to_dict()}
        except Exception as exc:
            with contextlib.suppress(Exception):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            self.assignment.epoch, self.assignment.owners = assigned
            if environment_failure(exc):
                self._halt(command.type_name, exc, applying=applying)
            log.exception("apply of %s failed; rolled back", command.type_name)
            return {"error": Scheduler0Error(f"apply failed: {exc}").to_dict()}
        ctx.elapsed = time.perf_counter() - started
        return {"ok": result}

    def _commit(self, index: int | None) -> None:
        """Record ``index`` (the last entry written) with the open
        transaction's changes, and commit."""
        if index is not None:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('applied_index', ?)",
                (str(index),),
            )
        self._conn.execute("COMMIT")
        if index is not None:
            self._applied_index = index

    # -- fires held in memory (fire_buffer.py) ----------------------------------------------

    def _hold(
        self, ctx: ApplyContext, command: c.Command, index: int | None, payload: bytes
    ) -> tuple[dict[str, Any], bytes] | None:
        """The outcome of a fire or result command the buffer took, and its
        ``_dumped`` form; or None (the caller flushes and applies it now)."""
        buffer = self._buffer
        started = time.perf_counter()
        try:
            if isinstance(command, c.SlotsFired):
                result = buffer.take_fired(ctx, command)
            elif isinstance(command, c.ResultsRecorded):
                result = buffer.take_results(ctx.db, command)
            else:
                return None
        except Exception as exc:  # a read failed: nothing was held
            if environment_failure(exc):
                self._halt(command.type_name, exc)
            log.exception("holding %s failed; applying it now", command.type_name)
            return None
        if result is None:
            return None
        outcome = {"ok": result}
        dumped = _dumped(outcome)
        if buffer.since is None:
            buffer.since = time.monotonic()
        # The entry as it came (compressed), not the decoded command and its
        # outcome: at 100,000 held fires those were ~40 MB more at the peak.
        buffer.held.append((payload, index, hashlib.sha256(dumped).digest()))
        self._taken += 1
        ctx.elapsed = time.perf_counter() - started
        full = buffer.size >= MAX_HELD_ROWS
        if full or time.monotonic() - buffer.since >= self.fire_buffer_seconds:
            self._flush(applying=True, keep=True)
        return outcome, dumped

    def _flush(self, *, applying: bool = False, keep: bool = False) -> None:
        """Write what the buffer holds in one transaction (under ``_lock``;
        ``applying``: before the entry being applied). A write that finds what
        it did not expect is rolled back and the held commands are applied one
        by one, as without the buffer. The buffer stays until its commands are
        written (``settle`` waits for ``_written``), and is dropped if this
        replica halts (the restart applies them again from the journal).

        ``keep``: a flush because the buffer is due (its age or its size) may
        keep the new rows whose result has not come (``FireBuffer.write``);
        every other flush (a read's, a snapshot's, another command's) writes
        them all, so a reader, a snapshot and every other command see the
        state the commands applied leave."""
        buffer = self._buffer
        if not (buffer.held or buffer.kept) or self.halted is not None:
            return
        taken = self._taken
        written = False
        try:
            written = self._write(buffer, applying, keep)
            if not written:
                self._replay(buffer, applying)
        finally:
            self._buffer = buffer.carried() if written else FireBuffer()
            if self._buffer.kept:
                self._buffer.since = time.monotonic()
            self._written = taken

    def _write(self, buffer: FireBuffer, applying: bool, keep: bool = False) -> bool:
        """One transaction for the held commands; False: replay them."""
        db = self._conn
        try:
            db.execute("BEGIN")
            if buffer.write(db, keep):
                self._commit(buffer.last_index)
                return True
            db.execute("ROLLBACK")
        except Exception as exc:
            with contextlib.suppress(Exception):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            if environment_failure(exc):
                self._halt("the fires held in memory", exc, applying=applying)
            log.exception("writing the fires held in memory failed; applying them one by one")
        return False

    def _replay(self, buffer: FireBuffer, applying: bool) -> None:
        if buffer.kept and not self._write(buffer.kept_only(), applying):
            # Rows of commands before the held ones, each new when it was kept
            # (``_keeping_taken``): not written, this replica would differ.
            self._halt(
                "the fires held in memory",
                RuntimeError("the rows a flush kept for their results could not be written"),
                applying=applying,
            )
        for payload, index, digest in buffer.held:
            command = c.decode(payload)
            ctx = ApplyContext(self._conn, self.assignment)
            again = self._apply_now(ctx, command, index, applying=applying)
            if hashlib.sha256(_dumped(again)).digest() != digest:
                log.error(
                    "%s at index %s applied one by one gave %s, not what it gave held in memory",
                    command.type_name,
                    index,
                    again,
                )

    def flush_due(self) -> None:
        """Write the held fires once the oldest has waited ``fire_buffer_seconds``
        (the log calls this on its apply thread, every tick)."""
        since = self._buffer.since
        if since is not None and time.monotonic() - since >= self.fire_buffer_seconds:
            with self._lock:
                if self.halted is None:
                    with contextlib.suppress(ApplyHalted):
                        self._flush(keep=True)

    def holding(self) -> bool:
        """Whether fires and results are held, not written yet (any thread)."""
        return self._unwritten(self._taken)

    def _unwritten(self, target: int) -> bool:
        """Whether a command up to ``target`` taken is not written yet (any
        thread): held, or its rows kept by a due flush."""
        return self._written < target or bool(self._buffer.kept)

    def settle(self) -> None:
        """Return once every command applied before the call is written, so
        that a read sees it (any thread; readers call it through
        ``Queries``). It writes them itself when the apply thread is not
        busy; when it is (applying, or writing them already), it waits, but
        only until they are written: an apply of another command writes them
        before anything else."""
        target = self._taken
        while self._unwritten(target) and self.halted is None:
            if self._lock.acquire(timeout=SETTLE_POLL_SECONDS):
                try:
                    if self._unwritten(target):
                        with contextlib.suppress(ApplyHalted):
                            self._flush()
                finally:
                    self._lock.release()
                return

    def _halt(self, type_name: str, exc: BaseException, *, applying: bool = True) -> NoReturn:
        if applying:  # the entry being applied is not: it comes again after the restart
            self.applied_commands -= 1
        self.halted = f"{type(exc).__name__}: {exc}"
        log.critical(
            "cannot apply %s: %s. This node stops applying (the entry is neither applied"
            " nor skipped) and exits; fix the cause (free the disk or the memory, or run the"
            " code that wrote the entry) and restart it: it"
            " rebuilds from its snapshot and journal and catches up",
            type_name,
            self.halted,
        )
        self._notify(Change.HALTED, self.halted)
        raise ApplyHalted(self.halted) from exc

    def _chain(self, payload: bytes, dumped: bytes) -> None:
        """Fold this entry and its outcome (``_dumped``) into the state digest
        (see ``digest``)."""
        self._digest = hashlib.sha256(self._digest + payload + dumped).digest()
        if self.applied_commands % DIGEST_EVERY == 0:
            self.checkpoints.append((self.applied_commands, self._digest.hex()))

    def digest(self) -> dict[str, Any]:
        """The replicated state's digest: a hash chained over every applied entry
        and its outcome, the same on every replica that applied the same log.
        ``index``/``digest`` are the latest; ``checkpoint_index``/``..._digest``
        the last multiple of ``DIGEST_EVERY`` commands, so that replicas a few
        commands apart still compare at one index."""
        index, digest = self.checkpoints[-1] if self.checkpoints else (0, bytes(32).hex())
        return {
            "index": self.applied_commands,
            "digest": self._digest.hex(),
            "checkpoint_index": index,
            "checkpoint_digest": digest,
        }

    def _notify(self, kind: Change, detail: Any) -> None:
        try:
            self._on_change(kind, detail)
        except Exception:  # a listener must never break apply
            log.exception("change listener failed")

    # -- snapshots -------------------------------------------------------------------

    def save_snapshot(self, path: str, raft_data: Any) -> None:
        """Write the whole database plus pysyncobj's own data to ``path`` now, on
        this thread: ``pin_snapshot`` then ``PinnedSnapshot.write``."""
        self.pin_snapshot(raft_data).write(path)

    def pin_snapshot(self, raft_data: Any) -> PinnedSnapshot:
        """Pin the state as applied so far, to be written to a file later, on
        any thread, while apply goes on (``PinnedSnapshot.write``).

        Takes milliseconds: it opens a read-only connection to the replica (WAL
        mode) and a read transaction on it, pinned by a first read; it captures
        what belongs with the state at this index (``raft_data``, the digest
        chain). Called between two applies (on the apply thread), so the pinned
        state is exactly the one applied; it checks that the pinned
        ``meta.applied_index`` is the last index this machine committed."""
        started = time.perf_counter()
        with self._lock:
            reader, pinned = self._pin()
            chain = (self.applied_commands, self._digest)
        return PinnedSnapshot(
            reader,
            raft_data,
            db_path=self.db_path,
            index=pinned,
            chain=chain,
            pinned_seconds=time.perf_counter() - started,
            metrics=self._metrics,
        )

    def pinned_reader(self) -> sqlite3.Connection:
        """A read-only connection with a read transaction open on the state as
        applied so far, every held fire written (any thread; the caller
        commits or closes it; it waits for the lock and the flush, up to
        ~0.25 s with ``MAX_HELD_ROWS`` held): a flush due may keep rows of
        commands it writes (``_flush``), so the file alone is not always the
        state at its ``meta.applied_index``. Raises ``ApplyHalted`` on a
        halted replica, whose file may lack what it held."""
        with self._lock:
            reader, _ = self._pin()
        return reader

    def _pin(self) -> tuple[sqlite3.Connection, int]:
        """Under ``_lock``: write what is held, open a read transaction, and
        check that it sees the last index this machine committed."""
        if self.halted is not None:  # what it held is not written: no state to pin
            raise ApplyHalted(self.halted)
        self._flush()
        reader = connect(self.db_path, writer=False)
        try:
            reader.execute("BEGIN")  # a read transaction: pinned at the first read below
            row = reader.execute("SELECT value FROM meta WHERE key = 'applied_index'").fetchone()
            pinned = int(row[0]) if row else 0
            if pinned != self._applied_index:
                raise RuntimeError(
                    f"the snapshot's read transaction sees applied_index {pinned},"
                    f" the state machine committed {self._applied_index}"
                )
        except BaseException:
            reader.close()
            raise
        return reader, pinned

    def load_snapshot(self, path: str) -> Any:
        """Replace the database with the snapshot at ``path``; return pysyncobj's data.

        A snapshot that is torn, truncated or damaged (its seal does not match,
        or an unsealed file fails SQLite's ``quick_check``) or that cannot be
        loaded halts this replica with one CRITICAL line naming the file, and
        raises ``SnapshotCorrupt``. Starting without it would replay the journal
        after the snapshot onto an empty database, and discarding it to fetch
        another from the leader would make this node forget entries it
        acknowledged (DESIGN.md, "Acknowledged means on disk")."""
        try:
            sealed = verify_snapshot(path)
            src = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
            try:
                if not sealed:
                    check = src.execute("PRAGMA quick_check").fetchone()
                    if check is None or check[0] != "ok":
                        raise SnapshotCorrupt(
                            f"it has no seal and SQLite finds it damaged ({check and check[0]})"
                        )
                    log.warning("snapshot %s has no seal (older, or restored): loading it", path)
                row = src.execute("SELECT data FROM _raft").fetchone()
                raft_data = pickle.loads(row[0])
                chain = _read_digest(src)
                # One hold of the lock from the copy to the state it names:
                # a reader between the two (a backup's pinned_reader) would
                # find the snapshot's tables with the replaced state's index.
                with self._lock:
                    self._buffer = FireBuffer()  # of the state the snapshot replaces
                    src.backup(self._conn)
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    add_missing_columns(self._conn)
                    self._conn.execute("DROP TABLE IF EXISTS _raft")
                    self._conn.execute("DROP TABLE IF EXISTS _digest")
                    self.applied_commands, self._digest = chain
                    self.checkpoints.clear()
                    self._load_assignment()
            finally:
                src.close()
        except Exception as exc:
            self._refuse_snapshot(path, exc)
        self._notify(Change.RESET, None)
        return raft_data

    def _refuse_snapshot(self, path: str, exc: BaseException) -> NoReturn:
        reason = exc if isinstance(exc, SnapshotCorrupt) else repr(exc)
        self.halted = f"raft snapshot {path} cannot be loaded: {reason}"
        log.critical(
            "%s. This node stops: starting without it would rebuild a wrong state."
            " Move this node's DataDir away and start it again to rebuild it from its"
            " peers (while the others hold a quorum), or restore a backup",
            self.halted,
        )
        self._notify(Change.HALTED, self.halted)
        raise SnapshotCorrupt(self.halted) from exc

    def close(self) -> None:
        with self._lock:
            if self.halted is None:
                with contextlib.suppress(ApplyHalted):
                    self._flush()
            self._conn.close()

    # -- cached replicated values ---------------------------------------------------------

    def _load_assignment(self) -> None:
        rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        owners = rows.get("owners")
        self._applied_index = int(rows.get("applied_index", 0))
        self.assignment.epoch = int(rows.get("epoch", 0))
        self.assignment.owners = orjson.loads(owners) if owners else [0] * BUCKETS


class SnapshotCancelled(Exception):
    """A snapshot being written was cancelled (``PinnedSnapshot.cancel``)."""


SNAPSHOT_HEADROOM_BYTES = 8 * 2**20
"""Free space a raft snapshot's copy must leave on its disk."""

BACKUP_STEP_PAGES = 4096
"""Pages copied per step of a snapshot's backup (16 MiB at SQLite's default
4 KiB page): a cancelled snapshot stops within one step."""


class PinnedSnapshot:
    """The replica as applied at one index, held by a read transaction on its
    own read-only connection (``StateMachine.pin_snapshot``), with what goes
    with that state: pysyncobj's data and the digest chain.

    ``write`` copies it to a snapshot file on whatever thread calls it; apply
    goes on meanwhile (WAL mode: the writer never waits for a reader; SQLite's
    online backup from a connection with an open read transaction copies that
    transaction's state, and releases the GIL while it copies). It never
    touches the state machine's own connection. While it is pinned the WAL
    cannot be checkpointed past it: apply's automatic checkpoints catch up
    once the copy ends.
    """

    def __init__(
        self,
        reader: sqlite3.Connection,
        raft_data: Any,
        *,
        db_path: Path | None = None,
        index: int,
        chain: tuple[int, bytes],
        pinned_seconds: float,
        metrics: Metrics | None,
    ) -> None:
        self._reader: sqlite3.Connection | None = reader
        self.raft_data = raft_data
        self._db_path = db_path
        """The replica's file: a copy about its size (and its WAL's) must fit."""
        self.index = index
        """``meta.applied_index`` of the pinned state."""
        self.applied, self.digest = chain
        self.pinned_seconds = pinned_seconds
        """How long pinning held the apply thread."""
        self._metrics = metrics
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop ``write`` within one backup step (it raises ``SnapshotCancelled``),
        or make it refuse to start; a pin never written is released by ``close``."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def close(self) -> None:
        """Release the read transaction (``write`` does when it ends)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def _check_room(self, path: str) -> None:
        """Refuse (ENOSPC, before writing) a copy that would leave less than
        ``SNAPSHOT_HEADROOM_BYTES`` free: a copy that fills the disk to its
        last byte fails anyway, and while it lasts the journal, raft's
        metadata and the replica itself cannot grow."""
        if self._db_path is None:
            return
        files = (self._db_path, self._db_path.with_name(self._db_path.name + "-wal"))
        needed = sum(f.stat().st_size for f in files if f.exists())
        free = shutil.disk_usage(Path(path).resolve().parent).free
        if free < needed + SNAPSHOT_HEADROOM_BYTES:
            raise OSError(
                errno.ENOSPC,
                f"a copy of ~{needed / 1e6:.1f} MB would leave less than"
                f" {SNAPSHOT_HEADROOM_BYTES / 1e6:.0f} MB free ({free / 1e6:.1f} MB free)",
            )

    def _progress(self, status: int, remaining: int, total: int) -> None:
        if self._cancelled.is_set():
            raise SnapshotCancelled("the snapshot was cancelled")

    def write(self, path: str) -> None:
        """Write the pinned state plus pysyncobj's data to ``path`` (replaced),
        sealed with its size and SHA-256 (``snapshot_file``) so that a torn or
        damaged copy is refused at load. Does not fsync (the raft adapter does
        with ``FlushBeforeAck``). Raises ``SnapshotCancelled`` if cancelled; the
        read transaction is released in every case."""
        started = time.perf_counter()
        reader = self._reader
        try:
            if reader is None:
                raise RuntimeError("this pinned snapshot was already written or closed")
            self._progress(0, 0, 0)
            for leftover in (path, path + "-journal"):  # of a write that died
                Path(leftover).unlink(missing_ok=True)
            self._check_room(path)
            dest = sqlite3.connect(path)
            try:
                dest.execute("PRAGMA synchronous=OFF")
                # In steps, inside the read transaction pinned above.
                reader.backup(dest, pages=BACKUP_STEP_PAGES, progress=self._progress)
                dest.execute("PRAGMA journal_mode=DELETE")
                dest.execute("CREATE TABLE IF NOT EXISTS _raft (data BLOB NOT NULL)")
                dest.execute("DELETE FROM _raft")
                dest.execute("INSERT INTO _raft (data) VALUES (?)", (pickle.dumps(self.raft_data),))
                dest.execute(
                    "CREATE TABLE IF NOT EXISTS _digest (applied INTEGER NOT NULL, digest BLOB)"
                )
                dest.execute("DELETE FROM _digest")
                dest.execute("INSERT INTO _digest VALUES (?, ?)", (self.applied, self.digest))
                dest.commit()
            finally:
                dest.close()
        finally:
            self.close()
        self._progress(0, 0, 0)
        seal_snapshot(path)
        size, elapsed = os.path.getsize(path), time.perf_counter() - started
        log.info(
            "snapshot written: %.1f MB in %.2f s (index %d; apply held %.1f ms to pin it)",
            size / 1e6,
            elapsed,
            self.index,
            self.pinned_seconds * 1000,
        )
        if self._metrics is not None:
            self._metrics.snapshot_written(elapsed, size, self.pinned_seconds)


DIGEST_EVERY = 64
"""Commands between two published state digests."""

FIRE_BUFFER_SECONDS = 10.0
"""How long a node holds applied fires and results in memory before writing
them (``fire_buffer.py``). Reads through ``Queries`` write them first, so
this bounds only what one flush writes and how far a replica's file lags its
log (a restart rebuilds the database from snapshot and journal anyway). A
fire is decided ``FireAheadSeconds`` before its slot and its result comes
after: in 10 s about three in four results land on rows not yet written, and
the fourth on rows a due flush kept for them; a job fired every second has
its row written once for ten fires."""


def _dumped(outcome: dict[str, Any]) -> bytes:
    """An outcome as the state digest folds it in (and as a held command's
    outcome is checked when it is replayed: by its SHA-256)."""
    return orjson.dumps(outcome, option=orjson.OPT_SORT_KEYS)


SETTLE_POLL_SECONDS = 0.005
"""How often a reader waiting for held fires to be written looks again."""

MAX_HELD_ROWS = 100_000
"""Executions held in memory (new rows, and results of rows written before)
that make a flush whatever their age: bounds the memory held (~30 MB) and
one flush (~0.25 s on this 2-core box, on the raft thread or a reader's)."""

_ENVIRONMENT_CODES = {
    5,  # SQLITE_BUSY: another process holds the database (an operator's shell)
    6,  # SQLITE_LOCKED
    7,  # SQLITE_NOMEM
    8,  # SQLITE_READONLY
    10,  # SQLITE_IOERR
    11,  # SQLITE_CORRUPT
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
    26,  # SQLITE_NOTADB
}


class ApplyHalted(Exception):
    """This replica's environment failed an apply; it applies nothing more."""


def environment_failure(exc: BaseException) -> bool:
    """A failure of this node's disk, memory or files, not of the command: the
    other replicas applied (or will apply) the same entry without it."""
    if isinstance(exc, MemoryError | OSError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _ENVIRONMENT_CODES


def _read_digest(src: sqlite3.Connection) -> tuple[int, bytes]:
    try:
        row = src.execute("SELECT applied, digest FROM _digest").fetchone()
    except sqlite3.OperationalError:  # a snapshot written before digests existed
        return 0, bytes(32)
    return (int(row[0]), bytes(row[1])) if row else (0, bytes(32))
