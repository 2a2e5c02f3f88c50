"""Backup files, and seeding a new node's data directory from one.

A backup is an online copy of the replicated state at ONE raft index, made by a
node (``GET /api/v1/backup``, ``scheduler0 backup``). The file is a small
versioned container::

    offset  size  field
    0       8     magic b"SCHED0BK"
    8       2     format version, unsigned big-endian (FORMAT_VERSION)
    10      4     header length n, unsigned big-endian
    14      n     header: UTF-8 JSON (``BackupHeader``: created_at, source node,
                  raft index, epoch, sha256 and size of the payload, ...)
    14+n    ...   payload: the SQLite database, as the replica held it at that
                  raft index (journal mode DELETE, so it is one standalone file)

``read_header`` refuses a file that is not a backup, of a format version this
code does not know, with a damaged header, or whose payload does not match its
size and sha256.

``restore_into`` seeds a NEW node (``scheduler0 restore``): it writes the
database as the node's first raft snapshot (``raft.snapshot``, the format
``StateMachine.save_snapshot`` writes) with a *seed marker* in place of
pysyncobj's own snapshot data. At its first start the node loads that
snapshot, and the raft adapter (``daemon/raft.py``, which alone knows
pysyncobj) turns the marker into an empty log positioned at the backup's raft
index, with the node's configured members. It does no raft work itself and
imports nothing of the daemon, so the CLI can run it.

This module has no daemon imports: the CLI uses it for ``restore`` and the
node for ``GET /backup``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import pickle
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from scheduler0.errors import Scheduler0Error

MAGIC = b"SCHED0BK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">8sHI")  # magic, format version, header length
MAX_HEADER_BYTES = 1 << 20
CHUNK = 1 << 20

SNAPSHOT_FILE = "raft.snapshot"
"""The node's raft snapshot in its data dir (``daemon/raft.py`` uses these names)."""
JOURNAL_FILE = "raft.journal"
RAFT_STATE_FILES = (SNAPSHOT_FILE, JOURNAL_FILE, f"{JOURNAL_FILE}.meta")
"""Files whose presence means the data dir already holds raft state."""

SEED_KIND = "scheduler0-restore-seed"
"""``kind`` of the marker ``restore_into`` stores in place of pysyncobj's data."""

RESTORED_LOST_ERROR = "restored from a backup: the callback was in flight when it was taken"


class BackupFileError(Scheduler0Error):
    """The file is not a usable backup; the message names the problem."""

    code = "bad_backup"


class RestoreRefused(Scheduler0Error):
    """The restore would overwrite or contradict something; nothing was written."""

    code = "restore_refused"


@dataclass(frozen=True)
class BackupHeader:
    """What a backup says about itself (the container's JSON header)."""

    created_at: float
    """Unix seconds at which the node pinned the copy."""
    source_node_id: int
    source_address: str
    raft_index: int
    """The log index of the last command whose effects the payload holds."""
    epoch: int
    """The bucket assignment's epoch in the payload."""
    payload_sha256: str
    payload_bytes: int
    scheduler0_version: str
    secret_key_check: str
    """``key_check(SecretKey)`` of the source cluster: lets a restore tell whether
    the new node has the same SecretKey (credential hashes are keyed with it)."""
    counts: dict[str, int] = field(default_factory=dict)
    """Rows in the payload: projects, credentials, jobs, executions, dispatched."""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def key_check(secret_key: str) -> str:
    """A short tag of ``secret_key`` that reveals nothing usable about it."""
    tag = hmac.new(secret_key.encode(), b"scheduler0-backup-key-check", hashlib.sha256)
    return tag.hexdigest()[:16]


# --- writing ----------------------------------------------------------------------------


def encode_prefix(header: BackupHeader) -> bytes:
    """Magic, version and header: every byte of the container before the payload."""
    body = json.dumps(header.to_json(), sort_keys=True).encode()
    return _PREFIX.pack(MAGIC, header.format_version, len(body)) + body


def file_sha256(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def iter_container(header: BackupHeader, payload: Path, *, remove: bool = False) -> Iterator[bytes]:
    """The container's bytes in chunks: prefix, then ``payload`` (deleted at the
    end, or when the reader stops early, if ``remove``)."""
    try:
        yield encode_prefix(header)
        with open(payload, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    finally:
        if remove:
            payload.unlink(missing_ok=True)


def write_container(path: Path, header: BackupHeader, payload: Path) -> None:
    with open(path, "wb") as out:
        for chunk in iter_container(header, payload):
            out.write(chunk)


# --- reading ----------------------------------------------------------------------------


def _read_exact(f: IO[bytes], size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise BackupFileError(f"the file is truncated: it ends after {f.tell()} bytes")
    return data


def _parse_header(raw: bytes, version: int) -> BackupHeader:
    try:
        values = json.loads(raw)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        values["format_version"] = version
        header = BackupHeader(**values)
    except (ValueError, TypeError) as exc:
        raise BackupFileError(f"the backup's header is damaged ({exc})") from None
    checks = (
        isinstance(header.raft_index, int) and header.raft_index >= 1,
        isinstance(header.payload_bytes, int) and header.payload_bytes > 0,
        isinstance(header.payload_sha256, str) and len(header.payload_sha256) == 64,
        isinstance(header.counts, dict),
    )
    if not all(checks):
        raise BackupFileError("the backup's header is damaged (a field has a wrong value)")
    return header


def read_header(path: Path, *, verify: bool = True) -> tuple[BackupHeader, int]:
    """The header of the backup at ``path`` and where its payload starts.

    Raises ``BackupFileError`` naming the problem: not a backup, a format
    version this code cannot read, a damaged header, a payload of the wrong
    size, or (``verify``) a payload whose sha256 is not the header's.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BackupFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or not prefix.startswith(MAGIC):
            raise BackupFileError(
                f"{path} is not a scheduler0 backup (it does not start with {MAGIC.decode()})"
            )
        _, version, length = _PREFIX.unpack(prefix)
        if version != FORMAT_VERSION:
            raise BackupFileError(
                f"{path} has backup format version {version}; this scheduler0 reads"
                f" version {FORMAT_VERSION} only"
            )
        if length > MAX_HEADER_BYTES:
            raise BackupFileError("the backup's header is damaged (its length is implausible)")
        header = _parse_header(_read_exact(f, length), version)
        offset = _PREFIX.size + length
        size = os.fstat(f.fileno()).st_size - offset
        if size != header.payload_bytes:
            raise BackupFileError(
                f"the backup is {'truncated' if size < header.payload_bytes else 'too long'}:"
                f" its header announces {header.payload_bytes} bytes of database, the file"
                f" holds {size}"
            )
        if verify:
            digest = hashlib.sha256()
            while chunk := f.read(CHUNK):
                digest.update(chunk)
            if digest.hexdigest() != header.payload_sha256:
                raise BackupFileError(
                    "checksum mismatch: the database in the backup is damaged (sha256"
                    f" {digest.hexdigest()[:16]}..., the header says"
                    f" {header.payload_sha256[:16]}...)"
                )
    return header, offset


# --- restoring --------------------------------------------------------------------------


def seed_marker(raft_index: int) -> dict[str, Any]:
    """What a seeded snapshot holds in place of pysyncobj's data."""
    return {"kind": SEED_KIND, "raft_index": raft_index}


def is_seed_marker(data: Any) -> bool:
    return isinstance(data, dict) and data.get("kind") == SEED_KIND


def raft_state_in(data_dir: Path) -> list[str]:
    """The raft files already in ``data_dir`` (empty for a new node)."""
    return [name for name in RAFT_STATE_FILES if (data_dir / name).exists()]


@dataclass(frozen=True)
class RestoreSummary:
    header: BackupHeader
    snapshot: Path
    counts: dict[str, int]
    marked_lost: int
    """Executions ``dispatched`` at backup time, recorded ``lost`` by the restore."""


def restore_into(
    path: Path, data_dir: Path, secret_key: str | None, *, check_key: bool = True
) -> RestoreSummary:
    """Seed ``data_dir`` of a node that never ran with the backup at ``path``.

    Refuses (``RestoreRefused``, nothing written) when the data dir already
    holds raft state, or when ``secret_key`` is missing or is not the SecretKey
    of the cluster that made the backup (``check_key=False`` skips that check on
    purpose: the caller has been told credentials will not work).

    What the new node gets, the same on every node restored from one file:
    every row as of the backup's raft index (ids, jobs with their
    ``last_fired_slot``, credentials, projects with their signing secrets,
    execution history, the bucket assignment), except that

    * executions ``dispatched`` at backup time (their callback was in flight)
      are recorded ``lost`` (``updated_at`` = the backup's ``created_at``), so
      the new owner of their bucket re-sends those still within
      MisfireGraceSeconds with the same ``execution_id`` and older ones stay
      visible as ``lost``;
    * the member list is emptied: the new cluster's leader records its own
      members from its ``Replicas`` (the old addresses would be wrong).
    """
    header, offset = read_header(path)
    if check_key:
        check_secret_key(header, secret_key)
    found = raft_state_in(data_dir)
    if found:
        raise RestoreRefused(
            f"{data_dir} already holds raft state ({', '.join(found)}): restore seeds a new"
            " node only; give it an empty DataDir"
        )
    made = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f"{SNAPSHOT_FILE}.restore-tmp"
    restored = False
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as src, open(tmp, "wb") as out:
            src.seek(offset)
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != header.payload_sha256:
            raise BackupFileError("checksum mismatch: the backup changed while it was read")
        counts, lost = _prepare_snapshot(tmp, header)
        os.replace(tmp, data_dir / SNAPSHOT_FILE)
        restored = True
    finally:
        tmp.unlink(missing_ok=True)
        if made and not restored:
            with contextlib.suppress(OSError):
                data_dir.rmdir()  # the data dir it made, left empty
    return RestoreSummary(header, data_dir / SNAPSHOT_FILE, counts, lost)


def _prepare_snapshot(db_path: Path, header: BackupHeader) -> tuple[dict[str, int], int]:
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupFileError(f"the database in the backup cannot be opened: {exc}") from None
        if check != ("ok",):
            raise BackupFileError(f"the database in the backup is damaged: {check[0]}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"meta", "projects", "credentials", "jobs", "executions", "members"} - tables
        if missing:
            raise BackupFileError(
                f"the database in the backup lacks tables: {', '.join(sorted(missing))}"
            )
        try:
            conn.execute("BEGIN")
            lost = conn.execute(
                "UPDATE executions SET state = 'lost', updated_at = ?, error = COALESCE(error, ?)"
                " WHERE state = 'dispatched'",
                (header.created_at, RESTORED_LOST_ERROR),
            ).rowcount
            conn.execute("DELETE FROM members")
            conn.execute("DROP TABLE IF EXISTS _raft")
            conn.execute("CREATE TABLE _raft (data BLOB NOT NULL)")
            conn.execute(
                "INSERT INTO _raft (data) VALUES (?)",
                (pickle.dumps(seed_marker(header.raft_index)),),
            )
            conn.execute("COMMIT")
            counts = {
                table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("projects", "credentials", "jobs", "executions")
            }
            conn.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.DatabaseError as exc:  # tables of the right names, not ours
            raise BackupFileError(
                f"the database in the backup is not a scheduler0 state: {exc}"
            ) from None
    finally:
        conn.close()
    return counts, lost


def check_secret_key(header: BackupHeader, secret_key: str | None) -> None:
    """Refuse a restore whose SecretKey is missing or not the backup cluster's."""
    if not secret_key:
        raise RestoreRefused(
            "no SecretKey: set the SecretKey of the cluster the backup comes from (in"
            " .scheduler0 or SCHEDULER0_SECRET_KEY) before restoring; client credentials"
            " are stored keyed with it"
        )
    if not hmac.compare_digest(key_check(secret_key), header.secret_key_check):
        raise RestoreRefused(
            "this node's SecretKey is not the one of the cluster that made the backup:"
            " every client credential in it would be refused. Use that cluster's"
            " SecretKey (or pass --ignore-secret-key to restore anyway)"
        )
