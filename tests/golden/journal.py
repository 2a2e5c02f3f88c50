"""Golden journals: the file format, the wire framing, replay and the dump.

A journal file is JSON lines, one raft entry per line, in log order::

    {"t": "JobsCreated", "payload": "<base64 of the exact bytes apply receives>"}

``t`` is only for people reading the file; replay uses ``payload`` alone.

A dump is what replaying a journal into a fresh ``StateMachine`` leaves:

* ``results``: each entry's apply result, in log order;
* ``tables``: every replicated table (found in ``sqlite_master``, so a table
  added later is dumped too), as column names and rows ordered by every
  column. ``sqlite_sequence`` is included although SQLite maintains it: it is
  replicated state (``JobsCreated`` takes its ids from it, and AUTOINCREMENT
  ids are never reused after a delete). Other ``sqlite_*`` tables are SQLite's
  own. ``meta.owners`` (1,024 bucket owners as JSON) is shown as runs
  ``[owner, count]`` to keep the file readable: the same information;
* ``machine``: the assignment the machine holds in memory (``epoch`` and the
  owner runs), which decides what a later ``SlotsFired`` accepts.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import orjson

from scheduler0.daemon.state.machine import StateMachine

HERE = Path(__file__).parent
COMPRESS_ABOVE = 4096
"""The framing threshold of every version so far (``commands._COMPRESS_ABOVE``)."""


def frame(version: int, type_name: str, args: dict[str, Any]) -> bytes:
    """The bytes a node of ``version`` proposed: ``j`` + orjson, or ``z`` +
    zlib (level 1) of it when the JSON is longer than 4 KiB."""
    body = orjson.dumps({"v": version, "t": type_name, "a": args})
    if len(body) > COMPRESS_ABOVE:
        return b"z" + zlib.compress(body, 1)
    return b"j" + body


def unframe(payload: bytes) -> dict[str, Any]:
    body = zlib.decompress(payload[1:]) if payload[:1] == b"z" else payload[1:]
    record: dict[str, Any] = orjson.loads(body)
    return record


def write_journal(path: Path, payloads: list[bytes]) -> None:
    lines = [
        json.dumps({"t": unframe(p)["t"], "payload": base64.b64encode(p).decode()})
        for p in payloads
    ]
    path.write_text("\n".join(lines) + "\n")


def read_journal(path: Path) -> list[bytes]:
    return [
        base64.b64decode(json.loads(line)["payload"])
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def owner_runs(owners: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for owner in owners:
        if runs and runs[-1][0] == owner:
            runs[-1][1] += 1
        else:
            runs.append([owner, 1])
    return runs


def dump_tables(db_path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db_path)
    try:
        names = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not row[0].startswith("sqlite_") or row[0] == "sqlite_sequence"
        ]
        tables: dict[str, Any] = {}
        for name in sorted(names):
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
            order = ", ".join(str(i + 1) for i in range(len(columns)))
            rows = [list(row) for row in conn.execute(f"SELECT * FROM {name} ORDER BY {order}")]
            if name == "meta":
                rows = [
                    [key, {"runs": owner_runs(orjson.loads(value))} if key == "owners" else value]
                    for key, value in rows
                ]
            tables[name] = {"columns": columns, "rows": rows}
        return tables
    finally:
        conn.close()


def replay(payloads: list[bytes], db_path: Path) -> dict[str, Any]:
    """Apply ``payloads`` to a fresh database at ``db_path``; return the dump."""
    machine = StateMachine(db_path)
    try:
        results = [{"t": unframe(p)["t"], "result": machine.apply(p)} for p in payloads]
        held = {"epoch": machine.epoch, "owners": owner_runs(machine.owners)}
    finally:
        machine.close()
    # Through JSON, so that tuples and lists compare as the checked file does.
    dump = {"results": results, "tables": dump_tables(db_path), "machine": held}
    loaded: dict[str, Any] = json.loads(json.dumps(dump))
    return loaded


def render(dump: dict[str, Any]) -> str:
    """Deterministic, diff-friendly JSON: one result or row per line."""

    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    out = ["{", '  "results": [']
    out += [f"    {one(r)}," for r in dump["results"]]
    out[-1] = out[-1].rstrip(",")
    out += ["  ],", '  "tables": {']
    names = sorted(dump["tables"])
    for i, name in enumerate(names):
        table = dump["tables"][name]
        out += [f"    {one(name)}: {{", f'      "columns": {one(table["columns"])},']
        if table["rows"]:
            out += ['      "rows": [']
            out += [f"        {one(row)}," for row in table["rows"]]
            out[-1] = out[-1].rstrip(",")
            out += ["      ]"]
        else:
            out += ['      "rows": []']
        out += ["    }," if i < len(names) - 1 else "    }"]
    out += ["  },", f'  "machine": {one(dump["machine"])}', "}"]
    return "\n".join(out) + "\n"
