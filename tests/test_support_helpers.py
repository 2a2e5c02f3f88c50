"""The test helpers themselves: ``wait_until`` fails fast on a failed assertion,
``audit`` catches each kind of double or lost run it claims to catch, each
xdist worker hands out ports only from its own slice, and the suite's xdist
groups keep a module (and the fixed-port modules) on one worker."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import FIXED_PORT_GROUP, FIXED_PORT_MODULES, TESTS, xdist_group_of
from tests.support import ports
from tests.support.audit import audit
from tests.support.nodes import wait_until
from tests.support.receiver import RunningReceiver

# -- wait_until ------------------------------------------------------------------------------


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, {"ready": True}])
    assert wait_until(lambda: next(calls), timeout=5, interval=0) == {"ready": True}


def test_wait_until_retries_what_is_not_up_yet() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    errors: list[Exception] = [
        httpx.ConnectError("refused", request=request),
        httpx.HTTPStatusError("503", request=request, response=httpx.Response(503)),
        ConnectionResetError("reset"),
        FileNotFoundError("no output yet"),
    ]

    def condition() -> str:
        if errors:
            raise errors.pop(0)
        return "up"

    assert wait_until(condition, timeout=5, interval=0) == "up"


def test_a_failed_assertion_in_the_condition_fails_at_once() -> None:
    calls = 0

    def condition() -> bool:
        nonlocal calls
        calls += 1
        raise AssertionError("wrong answer")

    started = time.monotonic()
    with pytest.raises(AssertionError, match="wrong answer"):
        wait_until(condition, timeout=30, interval=0.01)
    assert calls == 1
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("error", [KeyError("data"), ValueError("not JSON"), RuntimeError("exit")])
def test_other_errors_are_not_taken_for_not_up_yet(error: Exception) -> None:
    def condition() -> bool:
        raise error

    with pytest.raises(type(error)):
        wait_until(condition, timeout=30, interval=0.01)


def test_a_timeout_names_what_and_the_last_error() -> None:
    def condition() -> bool:
        raise httpx.ConnectError("refused")

    with pytest.raises(TimeoutError, match=r"the node.*ConnectError"):
        wait_until(condition, timeout=0.05, interval=0.01, what="the node")


# -- audit -----------------------------------------------------------------------------------

JOB = 7
SLOT = 1_800_000_000


def row(slot: int, state: str = "success", node: int = 2) -> dict[str, Any]:
    return {"job_id": JOB, "slot": slot, "state": state, "node_id": node}


def sent(slot: int, node: str, t: float) -> dict[str, Any]:
    return {"execution_id": f"{JOB}-{slot}", "id": JOB, "status": 200, "node": node, "t": t}


def grid(n: int) -> list[dict[str, Any]]:
    return [row(SLOT + i) for i in range(n)]


def once_each(n: int, node: str = "2") -> list[dict[str, Any]]:
    return [sent(SLOT + i, node, SLOT + i + 0.1) for i in range(n)]


def test_each_slot_once_passes_and_counts() -> None:
    result = audit(once_each(5), grid(5), {JOB})
    assert result["holes"] == 0
    assert result["duplicate_deliveries"] == 0
    assert result["redelivered"] == set()
    assert result["lost"] == 0


def test_a_second_send_without_a_crash_is_caught() -> None:
    records = [*once_each(5), sent(SLOT + 2, "3", SLOT + 3.5)]
    with pytest.raises(AssertionError, match="never crashed"):
        audit(records, grid(5), {JOB})


def test_one_run_sending_twice_is_caught_even_around_a_crash_of_another_node() -> None:
    records = [*once_each(5), sent(SLOT + 2, "2", SLOT + 2.5)]
    with pytest.raises(AssertionError, match="sent twice by one run"):
        audit(records, grid(5), {JOB}, crashes={"3": [SLOT + 2.2]})


def test_a_re_send_after_the_sender_crashed_is_counted() -> None:
    records = [*once_each(5), sent(SLOT + 2, "3", SLOT + 4.5)]
    result = audit(records, grid(5), {JOB}, crashes={"2": [SLOT + 3.0]})
    assert result["redelivered"] == {f"{JOB}-{SLOT + 2}"}
    assert result["duplicate_deliveries"] == 1


def test_a_lost_row_must_belong_to_a_crashed_node() -> None:
    rows = [*grid(4), row(SLOT + 4, "lost", node=2)]
    with pytest.raises(AssertionError, match="never crashed"):
        audit(once_each(4), rows, {JOB})


def test_a_lost_row_may_have_been_sent_only_by_the_run_that_crashed() -> None:
    rows = [*grid(4), row(SLOT + 4, "lost", node=2)]
    records = [*once_each(4), sent(SLOT + 4, "2", SLOT + 4.1)]
    assert audit(records, rows, {JOB}, crashes={"2": [SLOT + 4.5]})["lost"] == 1
    late = [*once_each(4), sent(SLOT + 4, "2", SLOT + 4.9)]  # from the run after the crash
    with pytest.raises(AssertionError, match="delivered by a run that never crashed"):
        audit(late, rows, {JOB}, crashes={"2": [SLOT + 4.5]})


def test_a_lost_row_after_the_last_crash_is_caught() -> None:
    rows = [*grid(4), row(SLOT + 4, "lost", node=2)]
    with pytest.raises(AssertionError, match="after the last crash"):
        audit(once_each(4), rows, {JOB}, crashes={"2": [SLOT + 1.5]})


def test_a_fired_run_nobody_sends_is_caught() -> None:
    rows = [row(SLOT, "dispatched"), *grid(30)[1:]]
    with pytest.raises(AssertionError, match="nobody ever sent"):
        audit(once_each(30)[1:], rows, {JOB})


def test_a_hole_in_the_grid_is_counted() -> None:
    rows = [r for r in grid(5) if r["slot"] != SLOT + 2]
    records = [r for r in once_each(5) if r["execution_id"] != f"{JOB}-{SLOT + 2}"]
    assert audit(records, rows, {JOB})["holes"] == 1


def test_receiver_requests_leave_a_line_still_being_written(tmp_path: Path) -> None:
    out = tmp_path / "requests.jsonl"
    whole = orjson.dumps({"path": "/cb", "headers": {"webhook-id": "b-1"}, "body_b64": "W10="})
    out.write_bytes(whole + b"\n" + whole[:20])  # the second record is half written
    receiver = RunningReceiver(1, tmp_path / "items.jsonl", out)
    assert receiver.requests() == [(orjson.loads(whole), {"webhook-id": "b-1"}, b"[]")]


# -- ports under xdist -------------------------------------------------------------------------


def _as_worker(monkeypatch: pytest.MonkeyPatch, worker: str | None, count: str | None) -> None:
    for name, value in (("PYTEST_XDIST_WORKER", worker), ("PYTEST_XDIST_WORKER_COUNT", count)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def test_outside_xdist_the_whole_range_is_this_processs(monkeypatch: pytest.MonkeyPatch) -> None:
    _as_worker(monkeypatch, None, None)
    assert ports._worker_slice(10_000, 32_768) == range(10_000, 32_768)
    _as_worker(monkeypatch, "master", "3")  # not a gwN worker
    assert ports._worker_slice(10_000, 32_768) == range(10_000, 32_768)


def test_each_worker_has_its_own_slice_and_no_two_overlap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slices = []
    for index in range(3):
        _as_worker(monkeypatch, f"gw{index}", "3")
        slices.append(ports._worker_slice(10_000, 32_768))
    assert [len(s) for s in slices] == [7_589] * 3
    assert slices[0].start == 10_000 and slices[-1].stop <= 32_768
    for before, after in itertools.pairwise(slices):
        assert before.stop == after.start  # disjoint and adjacent


def test_a_worker_hands_out_ports_only_from_its_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    _as_worker(monkeypatch, "gw1", "3")
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: 32_768)
    own = ports._worker_slice(10_000, 32_768)
    taker = ports._Ports()
    taken = [taker.take() for _ in range(50)]
    assert len(set(taken)) == 50
    assert all(port in own for port in taken), sorted(p for p in taken if p not in own)


# -- xdist groups ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_by_the_module() -> str:
    return "one per module"


def test_a_test_using_a_module_fixture_is_grouped_with_its_module(
    request: pytest.FixtureRequest, shared_by_the_module: str
) -> None:
    marker = request.node.get_closest_marker("xdist_group")
    assert marker is not None and marker.args == ("test_support_helpers.py",)


def test_a_test_sharing_nothing_with_its_module_goes_to_any_worker(
    request: pytest.FixtureRequest, tmp_path: object
) -> None:
    assert request.node.get_closest_marker("xdist_group") is None
    assert xdist_group_of(request.node.path, False) is None
    assert xdist_group_of(request.node.path) == "test_support_helpers.py"
    assert xdist_group_of(TESTS / "unit" / "test_cron.py") == "unit/test_cron.py"


def test_the_fixed_port_modules_exist_and_share_one_group() -> None:
    for name in FIXED_PORT_MODULES:
        assert (TESTS / name).is_file(), f"{name} in FIXED_PORT_MODULES is not a test module"
        assert xdist_group_of(TESTS / name) == FIXED_PORT_GROUP
    assert FIXED_PORT_GROUP not in {p.relative_to(TESTS).as_posix() for p in TESTS.rglob("*.py")}
