"""The seal on a snapshot file: what makes a torn or corrupt snapshot detectable.

A snapshot is a SQLite database (journal mode DELETE) followed by a 48-byte
trailer: a magic string, the database's size in bytes and the SHA-256 of those
bytes. SQLite reads no further than the page count its header records, so a
sealed file still opens as a database (read-only), and pysyncobj ships the file
to a follower byte for byte: the follower verifies exactly what the leader
wrote. The hash covers the file as written rather than its rows because it
costs one sequential read of a file the page cache still holds (hashing rows
would cost a query per table on the raft thread, which holds up apply).

A file without the trailer is either older than the seal or seeded by
``scheduler0 restore``; it is accepted only if SQLite's ``quick_check`` finds
it whole.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
from pathlib import Path

MAGIC = b"S0SNAP\x00\x01"
TRAILER = struct.Struct("<8sQ32s")
"""magic, database size (little-endian), SHA-256 of the database's bytes."""

_CHUNK = 1 << 20


class SnapshotCorrupt(Exception):
    """A snapshot file is torn, truncated or damaged: it must not be loaded."""


def _hash_prefix(path: str | Path, size: int) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = size
        while remaining > 0:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.digest()


def seal_snapshot(path: str | Path) -> None:
    """Append the trailer to the database file at ``path`` (closed by SQLite)."""
    size = os.path.getsize(path)
    trailer = TRAILER.pack(MAGIC, size, _hash_prefix(path, size))
    with open(path, "ab") as f:
        f.write(trailer)


def verify_snapshot(path: str | Path) -> bool:
    """True if ``path`` is sealed and its content matches the seal; False if it
    has no seal at all (the caller then checks the database itself). Raises
    ``SnapshotCorrupt`` naming what does not match."""
    total = os.path.getsize(path)
    if total < TRAILER.size:
        return False
    with open(path, "rb") as f:
        f.seek(total - TRAILER.size)
        magic, size, expected = TRAILER.unpack(f.read(TRAILER.size))
    if magic != MAGIC:
        return False
    if size != total - TRAILER.size:
        raise SnapshotCorrupt(
            f"it is {total - TRAILER.size} bytes before its seal, the seal says {size}"
        )
    if _hash_prefix(path, size) != expected:
        raise SnapshotCorrupt("its SHA-256 does not match the one sealed into it")
    return True


def check_snapshot(path: str | Path) -> None:
    """Raise ``SnapshotCorrupt`` unless ``path`` is a whole snapshot: sealed and
    matching its seal, or unsealed and found whole by SQLite's ``quick_check``.
    The raft adapter checks a snapshot received from the leader with it before
    the file may replace this node's current snapshot."""
    if verify_snapshot(path):
        return
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            check = db.execute("PRAGMA quick_check").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise SnapshotCorrupt(f"it has no seal and is not a database ({exc})") from exc
    if check is None or check[0] != "ok":
        raise SnapshotCorrupt(f"it has no seal and SQLite finds it damaged ({check and check[0]})")


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make the directory's entries (a create, a rename) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
