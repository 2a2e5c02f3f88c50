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

After a command commits, ``on_change`` hears which jobs or which assignment
changed, so the scheduler can refresh what it holds in memory. That is a side
effect outside the replicated state and may lag it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

from scheduler0.daemon.metrics import Metrics
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state import handlers  # noqa: F401  (registers every handler)
from scheduler0.daemon.state.apply import HANDLERS, ApplyContext, Assignment, Change
from scheduler0.daemon.state.idempotency import KEYED, apply_once
from scheduler0.daemon.state.schema import BUCKETS, add_missing_columns, connect
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
    committed entry in log order, and ``save_snapshot``/``load_snapshot``, all
    on the log's one apply thread (the ``ReplicatedStateMachine`` interface).
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
            outcome, ctx, type_name = self._apply(payload, index)
            self._chain(payload, outcome)
        if ctx is not None:
            if self._metrics is not None and type_name:
                self._metrics.apply_duration.labels(type_name).observe(ctx.elapsed)
            if "ok" in outcome:
                for kind, detail in ctx.changes:
                    self._notify(kind, detail)
        return outcome

    def _apply(
        self, payload: bytes, index: int | None
    ) -> tuple[dict[str, Any], ApplyContext | None, str]:
        self.applied_commands += 1
        try:
            command = c.decode(payload)
        except c.UndecodableCommand as exc:
            log.error("skipping undecodable command: %s", exc)
            return {"error": Scheduler0Error(f"undecodable command: {exc}").to_dict()}, None, ""
        db = self._conn
        ctx = ApplyContext(db, self.assignment)
        started = time.perf_counter()
        try:
            handler = HANDLERS[type(command)]
            db.execute("BEGIN")
            if isinstance(command, KEYED) and command.idempotency is not None:
                key = c.IdempotencyKey(*command.idempotency)
                result = apply_once(ctx, command.now, key, lambda: handler(ctx, command))
            else:
                result = handler(ctx, command)
            if index is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('applied_index', ?)",
                    (str(index),),
                )
            db.execute("COMMIT")
        except Scheduler0Error as exc:
            db.execute("ROLLBACK")
            return {"error": exc.to_dict()}, ctx, command.type_name
        except Exception as exc:
            with contextlib.suppress(Exception):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            if environment_failure(exc):
                self._halt(command.type_name, exc)
            log.exception("apply of %s failed; rolled back", command.type_name)
            return (
                {"error": Scheduler0Error(f"apply failed: {exc}").to_dict()},
                ctx,
                command.type_name,
            )
        ctx.elapsed = time.perf_counter() - started
        return {"ok": result}, ctx, command.type_name

    def _halt(self, type_name: str, exc: BaseException) -> None:
        self.applied_commands -= 1  # not applied: it comes again after the restart
        self.halted = f"{type(exc).__name__}: {exc}"
        log.critical(
            "cannot apply %s: %s. This node stops applying (the entry is neither applied"
            " nor skipped) and exits; fix the cause (free the disk) and restart it: it"
            " rebuilds from its snapshot and journal and catches up",
            type_name,
            self.halted,
        )
        self._notify(Change.HALTED, self.halted)
        raise ApplyHalted(self.halted) from exc

    def _chain(self, payload: bytes, outcome: dict[str, Any]) -> None:
        """Fold this entry and its outcome into the state digest (see ``digest``)."""
        self._digest = hashlib.sha256(
            self._digest + payload + orjson.dumps(outcome, option=orjson.OPT_SORT_KEYS)
        ).digest()
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
        """Write the whole database plus pysyncobj's own data to ``path``.

        This runs on the raft thread and holds up every apply meanwhile, so the
        copy is not fsynced: like pysyncobj's own journal (an mmap it never
        msyncs) it survives a process crash, not a power cut."""
        started = time.perf_counter()
        with self._lock:
            dest = sqlite3.connect(path)
            try:
                dest.execute("PRAGMA synchronous=OFF")
                self._conn.backup(dest)
                dest.execute("PRAGMA journal_mode=DELETE")
                dest.execute("CREATE TABLE IF NOT EXISTS _raft (data BLOB NOT NULL)")
                dest.execute("DELETE FROM _raft")
                dest.execute("INSERT INTO _raft (data) VALUES (?)", (pickle.dumps(raft_data),))
                dest.execute(
                    "CREATE TABLE IF NOT EXISTS _digest (applied INTEGER NOT NULL, digest BLOB)"
                )
                dest.execute("DELETE FROM _digest")
                dest.execute(
                    "INSERT INTO _digest VALUES (?, ?)", (self.applied_commands, self._digest)
                )
                dest.commit()
            finally:
                dest.close()
        size, elapsed = os.path.getsize(path), time.perf_counter() - started
        log.info("snapshot written: %.1f MB in %.2f s", size / 1e6, elapsed)
        if self._metrics is not None:
            self._metrics.snapshot_written(elapsed, size)

    def load_snapshot(self, path: str) -> Any:
        """Replace the database with the snapshot at ``path``; return pysyncobj's data."""
        with self._lock:
            src = sqlite3.connect(path)
            try:
                row = src.execute("SELECT data FROM _raft").fetchone()
                raft_data = pickle.loads(row[0])
                chain = _read_digest(src)
                src.backup(self._conn)
            finally:
                src.close()
            self._conn.execute("PRAGMA journal_mode=WAL")
            add_missing_columns(self._conn)
            self._conn.execute("DROP TABLE IF EXISTS _raft")
            self._conn.execute("DROP TABLE IF EXISTS _digest")
            self.applied_commands, self._digest = chain
            self.checkpoints.clear()
            self._load_assignment()
        self._notify(Change.RESET, None)
        return raft_data

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- cached replicated values ---------------------------------------------------------

    def _load_assignment(self) -> None:
        rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        owners = rows.get("owners")
        self.assignment.epoch = int(rows.get("epoch", 0))
        self.assignment.owners = orjson.loads(owners) if owners else [0] * BUCKETS


DIGEST_EVERY = 64
"""Commands between two published state digests."""

_ENVIRONMENT_CODES = {
    7,  # SQLITE_NOMEM
    8,  # SQLITE_READONLY
    10,  # SQLITE_IOERR
    11,  # SQLITE_CORRUPT
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
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
