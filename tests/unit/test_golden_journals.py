"""Golden journals: old log entries must keep applying exactly as they did.

``tests/golden/v1.journal`` and ``v2.journal`` are raft entries as nodes of
each command version wrote them; ``v1.dump.json`` and ``v2.dump.json`` are the
checked state and apply results of replaying them into a fresh machine (see
``tests/golden/journal.py`` for both formats). These files are the contract:
this module only reads them. If a change of apply behaviour makes a test here
fail, the change breaks replay of existing journals; keep the old behaviour for
the old entries (or bump the command version) instead of regenerating the files
with ``python -m tests.golden.make_golden``.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.schema import JOB_BLOCK_BITS
from tests.golden.journal import (
    COMPRESS_ABOVE,
    HERE,
    dump_tables,
    frame,
    owner_runs,
    read_journal,
    replay,
    unframe,
)

pytestmark = pytest.mark.unit

JOURNALS = ["v1", "v2", "v3", "v4", "v5", "v6"]


def checked(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((HERE / f"{name}.dump.json").read_text())
    return loaded


def assert_same_tables(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every checked table exactly; a table added to the schema since the dump
    was taken must be left empty by the old entries, and a column added since
    must be left NULL or 0 (its default) by them. The derived
    ``project_job_counts`` and ``job_blocks`` must count the checked jobs."""
    for name, table in sorted(actual.items()):
        if name == "project_job_counts" and name not in expected:
            assert table["rows"] == job_counts(expected["jobs"]), "derived job counts"
            continue
        if name == "job_blocks" and name not in expected:
            assert table["rows"] == job_blocks(expected["jobs"]), "derived job blocks"
            continue
        if name not in expected:
            assert table["rows"] == [], f"old entries wrote to the new table {name}"
            continue
        columns, checked_columns = table["columns"], expected[name]["columns"]
        assert columns[: len(checked_columns)] == checked_columns, f"columns of {name}"
        width = len(checked_columns)
        for row in table["rows"]:
            added = dict(zip(columns[width:], row[width:], strict=True))
            assert all(v in (None, 0) for v in added.values()), f"old entries set {added}"
        rows = [row[:width] for row in table["rows"]]
        assert rows == expected[name]["rows"], f"rows of {name}"
    assert sorted(set(expected) - set(actual)) == [], "tables missing"


def job_counts(jobs: dict[str, Any]) -> list[list[int]]:
    """``project_job_counts`` as it must be beside the ``jobs`` table dumped."""
    column = jobs["columns"].index("project_id")
    counts = Counter(row[column] for row in jobs["rows"])
    return [[project_id, n] for project_id, n in sorted(counts.items())]


def job_blocks(jobs: dict[str, Any]) -> list[list[int]]:
    """``job_blocks`` as it must be beside the ``jobs`` table dumped."""
    columns = jobs["columns"]
    project, job_id = columns.index("project_id"), columns.index("id")
    counts = Counter((row[project], row[job_id] >> JOB_BLOCK_BITS) for row in jobs["rows"])
    return [[p, block, n] for (p, block), n in sorted(counts.items())]


@pytest.mark.parametrize("name", JOURNALS)
def test_replaying_the_journal_gives_the_checked_dump(name: str, tmp_path: Path) -> None:
    expected = checked(name)
    actual = replay(read_journal(HERE / f"{name}.journal"), tmp_path / "state.db")
    assert len(actual["results"]) == len(expected["results"])
    for index, (got, want) in enumerate(zip(actual["results"], expected["results"], strict=True)):
        assert got == want, f"entry {index} ({want['t']}) applies differently"
    assert_same_tables(actual["tables"], expected["tables"])
    assert actual["machine"] == expected["machine"]


@pytest.mark.parametrize("name", JOURNALS)
def test_a_snapshot_at_any_index_then_the_rest_gives_the_checked_dump(
    name: str, tmp_path: Path
) -> None:
    """Nodes rebuild from snapshots taken at different log indexes: a snapshot
    after any entry, restored and followed by the rest, ends in the same state."""
    payloads = read_journal(HERE / f"{name}.journal")
    expected = checked(name)
    for split in range(0, len(payloads) + 1, 4):
        before, after = tmp_path / f"{split}-a.db", tmp_path / f"{split}-b.db"
        first = StateMachine(before)
        for payload in payloads[:split]:
            first.apply(payload)
        first.save_snapshot(str(tmp_path / f"{split}.snap"), ("raft", split))
        first.close()
        second = StateMachine(after)
        assert second.load_snapshot(str(tmp_path / f"{split}.snap")) == ("raft", split)
        results = [second.apply(payload) for payload in payloads[split:]]
        held = {"epoch": second.epoch, "owners": owner_runs(second.owners)}
        second.close()
        assert json.loads(json.dumps(results)) == [
            r["result"] for r in expected["results"][split:]
        ], f"after a snapshot at {split}"
        assert_same_tables(json.loads(json.dumps(dump_tables(after))), expected["tables"])
        assert held == expected["machine"]


@pytest.mark.parametrize("name", JOURNALS)
def test_the_journal_is_framed_as_its_version_wrote_it(name: str) -> None:
    version = int(name.removeprefix("v"))
    payloads = read_journal(HERE / f"{name}.journal")
    assert any(p[:1] == b"z" for p in payloads), "no compressed entry"
    for index, payload in enumerate(payloads):
        record = unframe(payload)
        assert record["v"] == version, index
        # "j" + orjson, or "z" + zlib of it above 4 KiB. The JSON is compared
        # byte for byte; compressed bytes may differ between zlib builds.
        body = orjson.dumps({"v": version, "t": record["t"], "a": record["a"]})
        assert (payload[:1] == b"z") == (len(body) > COMPRESS_ABOVE), index
        if payload[:1] == b"j":
            assert payload == frame(version, record["t"], record["a"]) == b"j" + body, index
        else:
            assert zlib.decompress(payload[1:]) == body, index
        # Still readable: the type is registered and the fields are accepted.
        assert c.decode(payload) is not None


def test_the_current_journal_has_every_command_type() -> None:
    current = HERE / f"v{c.VERSION}.journal"
    assert current.exists(), f"no golden journal for command version {c.VERSION}: add one"
    written = {unframe(p)["t"] for p in read_journal(current)}
    missing = sorted(set(c.COMMAND_TYPES) - written)
    assert not missing, (
        f"v{c.VERSION}.journal lacks {missing}: append entries for them in"
        " tests/golden/make_golden.py and regenerate (earlier entries keep their meaning)"
    )
