"""The HTTP executor against a real receiver process (and a mock transport for accounting)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from scheduler0 import signing
from scheduler0.daemon.executor.delivery import Delivery, node_plan
from scheduler0.daemon.executor.http import Executor, Fire, FireResult, _chunk_batch
from tests.support.receiver import run_receiver

SECRET = "s3cret"
PLAN = node_plan(retry_max=0, retry_delay=0.0, timeout=5.0)


def make_fires(
    base_url: str, count: int, *, path: str = "/cb", secret: str = SECRET, start: int = 0
) -> list[Fire]:
    return [
        Fire(
            execution_id=f"{i}-1700000000",
            job_id=i,
            slot=1_700_000_000,
            callback_url=f"{base_url}{path}",
            signing_secret=secret,
            payload={"id": i, "execution_id": f"{i}-1700000000", "slot": 1_700_000_000},
        )
        for i in range(start, start + count)
    ]


def make_executor(**overrides: Any) -> Executor:
    options: dict[str, Any] = {
        "max_workers": 4,
        "max_queue": 10_000,
        "timeout": 5.0,
        "retry_max": 0,
        "retry_delay": 0.0,
        "payload_max_bytes": 1_000_000,
    }
    return Executor(**(options | overrides))


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def deliver(
    executor: Executor, fires: Sequence[Fire], timeout: float = 15.0
) -> list[FireResult]:
    """Submit ``fires`` and collect one result per fire (bounded wait)."""
    results: list[FireResult] = []
    executor.submit(fires)

    def all_done() -> bool:
        results.extend(executor.drain_results())
        return len(results) >= len(fires)

    await wait_for(all_done, timeout)
    return results


def run(scenario: Callable[[Executor], Awaitable[Any]], **overrides: Any) -> Any:
    async def main() -> Any:
        executor = make_executor(**overrides)
        await executor.start()
        try:
            return await scenario(executor)
        finally:
            await executor.stop(drain_timeout=0)

    return asyncio.run(main())


def test_fires_sharing_url_and_secret_go_in_one_post(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver:
        fires = (
            make_fires(receiver.url, 3, path="/a")
            + make_fires(receiver.url, 2, path="/b", start=3)
            + make_fires(receiver.url, 1, path="/a", secret="other", start=5)
        )
        results = run(lambda ex: deliver(ex, fires))
        assert receiver.stats()["requests"] == 3
        records = receiver.records()

    assert {r.execution_id for r in results} == {f.execution_id for f in fires}
    assert all(r.state == "success" and r.attempts == 1 for r in results)
    assert all(r.status_code == 200 and r.error is None for r in results)
    per_batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        per_batch[record["batch"]].append(record)
    sizes = sorted((items[0]["path"], len(items)) for items in per_batch.values())
    assert sizes == [("/a", 1), ("/a", 3), ("/b", 2)]
    assert {record["chunk"] for record in records} == {"1/1"}


def test_fires_of_another_method_go_in_their_own_request_with_that_method(
    tmp_path: Path,
) -> None:
    """An executor's ``webhook_method``: fires sharing URL and secret but not
    the method are two requests, each with its method and the same body shape."""
    with run_receiver(tmp_path) as receiver:
        fires = make_fires(receiver.url, 2) + make_fires(receiver.url, 3, start=2)
        for fire in fires[2:4]:
            fire.method = "PUT"
        fires[4].method = "DELETE"
        results = run(lambda ex: deliver(ex, fires))
        records = receiver.records()

    assert all(r.state == "success" and r.status_code == 200 for r in results)
    by_method: dict[str, list[int]] = defaultdict(list)
    for record in records:
        by_method[record["method"]].append(record["id"])
    assert {method: sorted(ids) for method, ids in by_method.items()} == {
        "POST": [0, 1],
        "PUT": [2, 3],
        "DELETE": [4],
    }
    assert len({record["batch"] for record in records}) == 3


def test_large_batches_split_into_numbered_chunks_delivered_once(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver:
        fires = make_fires(receiver.url, 40)
        results = run(lambda ex: deliver(ex, fires), payload_max_bytes=400)
        records = receiver.records()
        requests = receiver.stats()["requests"]

    assert all(r.state == "success" for r in results)
    assert Counter(r["execution_id"] for r in records) == Counter(f.execution_id for f in fires)
    chunk_ids = {r["chunk"] for r in records}
    total = len(chunk_ids)
    assert total == requests > 1
    assert chunk_ids == {f"{n}/{total}" for n in range(1, total + 1)}
    assert len({r["batch"] for r in records}) == 1


def test_chunk_bodies_fit_the_limit_and_keep_order() -> None:
    fires = make_fires("http://x", 50)
    payloads = [fire.payload for fire in fires]
    chunks = list(_chunk_batch("http://x/cb", SECRET, fires, 250, PLAN))
    assert len(chunks) > 1
    assert all(len(chunk.body) <= 250 for chunk in chunks)
    delivered = [item for chunk in chunks for item in orjson.loads(chunk.body)]
    assert delivered == payloads
    assert all(fire.payload == b"" for fire in fires)  # the bytes live in the bodies only
    assert [chunk.headers["x-payload-chunk-id"] for chunk in chunks] == [
        f"{n}/{len(chunks)}" for n in range(1, len(chunks) + 1)
    ]


def test_a_chunk_without_room_is_refused_without_building_its_body() -> None:
    fires = make_fires("http://x", 50)
    sizes: list[int] = []

    def admit(size: int) -> bool:
        sizes.append(size)
        return len(sizes) == 1  # room for the first chunk only

    chunks = list(_chunk_batch("http://x/cb", SECRET, fires, 250, PLAN, admit))
    assert len(chunks) > 1
    assert not chunks[0].refused
    assert sizes[0] == len(chunks[0].body)  # the size asked about is the body's
    assert all(chunk.refused and chunk.body == b"" for chunk in chunks[1:])
    assert [fire for chunk in chunks for fire in chunk.fires] == fires
    assert all(fire.payload == b"" for fire in fires)


def test_payload_larger_than_the_limit_goes_alone() -> None:
    fires = make_fires("http://x", 3)
    big = Fire("big", 99, 1, "http://x/cb", SECRET, {"id": 99, "data": "x" * 500})
    chunks = list(_chunk_batch("http://x/cb", SECRET, [fires[0], big, *fires[1:]], 200, PLAN))
    assert [len(chunk.fires) for chunk in chunks] == [1, 1, 2]
    assert chunks[1].fires == [big]


def test_failed_attempts_are_retried_until_success(tmp_path: Path) -> None:
    with run_receiver(tmp_path, fail_first=2) as receiver:
        fires = make_fires(receiver.url, 3)
        results = run(lambda ex: deliver(ex, fires), retry_max=3, retry_delay=0.01)
        assert receiver.stats()["requests"] == 3
        statuses = Counter(r["status"] for r in receiver.records())

    assert statuses == {500: 6, 200: 3}
    assert all(r.state == "success" and r.attempts == 3 for r in results)
    assert all(r.status_code == 200 and r.error is None for r in results)


def test_always_failing_receiver_gives_failed_after_all_attempts(tmp_path: Path) -> None:
    with run_receiver(tmp_path, status=500) as receiver:
        fires = make_fires(receiver.url, 2)
        results = run(lambda ex: deliver(ex, fires), retry_max=2, retry_delay=0.01)
        assert receiver.stats()["requests"] == 3

    assert len(results) == 2
    for result in results:
        assert (result.state, result.status_code, result.attempts) == ("failed", 500, 3)
        assert result.error is not None and result.error.startswith("HTTP 500")
        assert len(result.error) <= 200


def test_slow_receiver_times_out_each_attempt(tmp_path: Path) -> None:
    with run_receiver(tmp_path, delay=5) as receiver:
        fires = make_fires(receiver.url, 1)
        started = time.monotonic()
        results = run(lambda ex: deliver(ex, fires), timeout=0.3, retry_max=1)
        elapsed = time.monotonic() - started
        assert receiver.stats()["requests"] == 2

    [result] = results
    assert (result.state, result.status_code, result.attempts) == ("failed", None, 2)
    assert result.error is not None and "timeout" in result.error
    assert elapsed < 4


def test_concurrent_posts_bounded_by_max_workers(tmp_path: Path) -> None:
    with run_receiver(tmp_path, delay=0.3) as receiver:
        fires = [fire for n in range(6) for fire in make_fires(receiver.url, 1, path=f"/{n}")]
        results = run(lambda ex: deliver(ex, fires), max_workers=2, destination_share=1.0)
        stats = receiver.stats()

    assert all(r.state == "success" for r in results)
    assert stats["requests"] == 6
    assert stats["max_concurrency"] == 2


def test_retry_wait_does_not_hold_a_worker(tmp_path: Path) -> None:
    with run_receiver(tmp_path, fail_first=1) as receiver:
        first = make_fires(receiver.url, 1, path="/first")
        second = make_fires(receiver.url, 1, path="/second", start=1)
        results = run(
            lambda ex: deliver(ex, first + second), max_workers=1, retry_max=1, retry_delay=1.0
        )

    assert [r.execution_id for r in results] == [second[0].execution_id, first[0].execution_id]
    assert [r.attempts for r in results] == [1, 2]
    assert all(r.state == "success" for r in results)


def test_posts_are_signed_with_the_project_secret(tmp_path: Path) -> None:
    with run_receiver(tmp_path, secret=SECRET) as receiver:
        good = make_fires(receiver.url, 2, path="/good")
        bad = make_fires(receiver.url, 1, path="/bad", secret="not-the-secret", start=2)
        run(lambda ex: deliver(ex, good + bad))
        records = receiver.records()

    verified = {r["path"]: r["verified"] for r in records}
    assert verified == {"/good": True, "/bad": False}


def test_connection_refused_is_a_failed_attempt() -> None:
    with_closed_port = make_fires("http://127.0.0.1:9", 1)
    [result] = run(lambda ex: deliver(ex, with_closed_port), retry_max=1)
    assert (result.state, result.status_code, result.attempts) == ("failed", None, 2)
    assert result.error


def test_invalid_url_fails_without_retrying() -> None:
    fires = make_fires("ftp://127.0.0.1", 1)
    [result] = run(lambda ex: deliver(ex, fires), retry_max=3, retry_delay=5)
    assert (result.state, result.attempts) == ("failed", 1)
    assert result.error is not None and "invalid callback url" in result.error


# -- accounting and headers, with a gated mock transport --------------------


class GatedTransport(httpx.AsyncBaseTransport):
    """Holds every request until ``gate`` is set; remembers what was sent."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await request.aread()
        await self.gate.wait()
        return httpx.Response(204)


def test_capacity_queue_depth_and_in_flight_accounting() -> None:
    async def scenario() -> None:
        transport = GatedTransport()
        executor = make_executor(max_workers=1, max_queue=10, transport=transport)
        await executor.start()
        executor.submit(
            make_fires("http://r", 2, path="/a") + make_fires("http://r", 3, path="/b", start=2)
        )
        await wait_for(lambda: len(transport.requests) == 1)
        assert (executor.in_flight, executor.queue_depth) == (2, 3)
        assert executor.free_capacity() == 5
        executor.submit(make_fires("http://r", 8, path="/c", start=5))
        assert executor.free_capacity() == 0
        transport.gate.set()
        await wait_for(lambda: executor.in_flight + executor.queue_depth == 0)
        assert executor.free_capacity() == 10
        assert len(executor.drain_results()) == 13
        assert executor.drain_results() == []
        await executor.stop()

    asyncio.run(scenario())


def test_requests_carry_the_documented_headers() -> None:
    async def scenario() -> httpx.Request:
        transport = GatedTransport()
        transport.gate.set()
        executor = make_executor(transport=transport, clock=lambda: 1_700_000_123.9)
        await executor.start()
        results = await deliver(executor, make_fires("http://r", 2))
        await executor.stop()
        assert results[0].finished_at == 1_700_000_123.9
        return transport.requests[0]

    request = asyncio.run(scenario())
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "scheduler0"
    assert request.headers["x-payload-chunk-id"] == "1/1"
    assert len(request.headers["x-scheduler0-batch-id"]) == 16
    assert request.headers["x-scheduler0-timestamp"] == "1700000123"
    assert request.headers["x-scheduler0-signature"].startswith("v1=")
    webhook_id = request.headers["x-scheduler0-batch-id"] + "-1"
    assert request.headers["webhook-id"] == webhook_id
    assert request.headers["webhook-timestamp"] == "1700000123"
    assert request.headers["webhook-signature"] == signing.standard_signature(
        SECRET, webhook_id, request.content, 1_700_000_123
    )
    assert [item["id"] for item in orjson.loads(request.content)] == [0, 1]


def test_stop_abandons_unsent_fires_without_results() -> None:
    async def scenario() -> None:
        transport = GatedTransport()
        executor = make_executor(max_workers=1, transport=transport)
        await executor.start()
        executor.submit(
            make_fires("http://r", 1, path="/a") + make_fires("http://r", 1, path="/b", start=1)
        )
        await wait_for(lambda: len(transport.requests) == 1)
        started = time.monotonic()
        await executor.stop(drain_timeout=0.2)
        assert time.monotonic() - started < 2
        assert executor.drain_results() == []
        with pytest.raises(RuntimeError):
            executor.submit(make_fires("http://r", 1))

    asyncio.run(scenario())


def test_stop_drains_work_that_finishes_in_time() -> None:
    async def scenario() -> None:
        transport = GatedTransport()
        executor = make_executor(max_workers=1, transport=transport)
        await executor.start()
        executor.submit(
            make_fires("http://r", 1, path="/a") + make_fires("http://r", 1, path="/b", start=1)
        )
        asyncio.get_running_loop().call_soon(transport.gate.set)
        await executor.stop(drain_timeout=10)
        assert len(executor.drain_results()) == 2

    asyncio.run(scenario())


def test_error_text_is_capped_and_huge_bodies_are_not_buffered() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=b"overloaded " * 200_000)

    transport = httpx.MockTransport(handler)
    [result] = run(lambda ex: deliver(ex, make_fires("http://r", 1)), transport=transport)
    assert (result.state, result.status_code, result.attempts) == ("failed", 503, 1)
    assert result.error is not None and result.error.startswith("HTTP 503: overloaded")
    assert len(result.error) <= 200


def test_an_idle_executor_keeps_no_delivered_fire_alive() -> None:
    """Once delivered and recorded, a fire (its payload and its chunk's body)
    is garbage: idle workers must not hold their last chunk."""
    import gc

    def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def scenario(executor: Executor) -> int:
        fires = make_fires("http://127.0.0.1:9", 2_000)
        results = await deliver(executor, fires)
        assert len(results) == 2_000 and {r.state for r in results} == {"success"}
        del fires, results
        await asyncio.sleep(0)
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, Fire))

    alive = run(
        scenario,
        transport=httpx.MockTransport(ok),
        max_workers=8,
        payload_max_bytes=20_000,
    )
    assert alive == 0


# -- bulkheads per destination -------------------------------------------------------------


def test_one_destination_gets_at_most_its_share_of_workers(tmp_path: Path) -> None:
    with run_receiver(tmp_path, delay=0.3) as receiver:
        fires = [fire for n in range(8) for fire in make_fires(receiver.url, 1, path=f"/{n}")]
        results = run(lambda ex: deliver(ex, fires), max_workers=4, destination_share=0.5)
        stats = receiver.stats()
    assert all(r.state == "success" for r in results)
    assert stats["max_concurrency"] == 2


def test_a_hung_destination_does_not_delay_a_healthy_one(tmp_path: Path) -> None:
    (tmp_path / "hung").mkdir()
    (tmp_path / "ok").mkdir()
    with (
        run_receiver(tmp_path / "hung", delay=30) as hung,
        run_receiver(tmp_path / "ok") as healthy,
    ):

        async def scenario(executor: Executor) -> tuple[float, list[FireResult]]:
            stuck = [f for n in range(40) for f in make_fires(hung.url, 1, path=f"/{n}")]
            executor.submit(stuck)
            await asyncio.sleep(0.2)  # every worker the hung destination may take is taken
            started = time.monotonic()
            results = await deliver(executor, make_fires(healthy.url, 5), timeout=10)
            return time.monotonic() - started, results

        elapsed, results = run(scenario, max_workers=8, destination_share=0.25, timeout=20.0)
    assert [r.state for r in results] == ["success"] * 5
    assert elapsed < 2.0, elapsed


def test_a_full_backlog_records_fires_failed_with_the_reason(tmp_path: Path) -> None:
    with run_receiver(tmp_path, delay=2) as receiver:
        fires = [f for n in range(10) for f in make_fires(receiver.url, 1, path=f"/{n}")]

        async def scenario(executor: Executor) -> list[FireResult]:
            return await deliver(executor, fires, timeout=30)

        # Room for two chunks' bodies (and a half): the rest are refused.
        alike = [dataclasses.replace(fires[0])]  # chunking lets go of the fire's own bytes
        body = next(iter(_chunk_batch(fires[0].callback_url, SECRET, alike, 10**6, PLAN))).body
        room = int(len(body) * 2.5)
        results = run(scenario, max_workers=1, destination_max_bytes=room, timeout=10.0)
    refused = [r for r in results if r.state == "failed"]
    sent = [r for r in results if r.state == "success"]
    assert len(sent) == 2, results
    assert len(refused) == 8
    assert all(r.attempts == 0 and r.status_code is None for r in refused)
    assert all("already waiting for http://127.0.0.1:" in (r.error or "") for r in refused)


def test_a_full_destination_says_so_and_refuses_fires_without_bodies(tmp_path: Path) -> None:
    """``refusing`` tells when a destination's backlog has no room for a body
    of a given size; ``refuse`` records fires failed with the backlog's reason,
    sending nothing."""
    with run_receiver(tmp_path, delay=2) as receiver:
        first = make_fires(receiver.url, 1)
        others = make_fires(receiver.url, 3, start=10)
        for fire in others:
            fire.payload = b""

        async def scenario(executor: Executor) -> tuple[bool, bool, bool, list[FireResult]]:
            unknown = executor.refusing(receiver.url, 10)
            executor.submit(first)  # its body fills the backlog
            await wait_for(lambda: executor.in_flight == 1)
            full = executor.refusing(receiver.url, 10)
            other_host = executor.refusing("http://localhost:9/cb", 10)
            executor.refuse(others)
            results: list[FireResult] = []

            def three() -> bool:
                results.extend(executor.drain_results())
                return len(results) >= 3

            await wait_for(three)
            return unknown, full, other_host, results

        unknown, full, other_host, results = run(
            scenario, max_workers=1, destination_max_bytes=100, timeout=10.0
        )
    assert (unknown, full, other_host) == (False, True, False)
    assert sorted(r.job_id for r in results) == [10, 11, 12]
    assert all(r.state == "failed" and r.attempts == 0 for r in results)
    assert all("already waiting for http://127.0.0.1:" in (r.error or "") for r in results)


def test_a_destination_that_keeps_failing_opens_its_circuit() -> None:
    closed = f"http://127.0.0.1:{_closed_port()}"
    fires = [f for n in range(12) for f in make_fires(closed, 1, path=f"/{n}")]
    results = run(lambda ex: deliver(ex, fires), max_workers=1, timeout=2.0)
    errors = [r.error or "" for r in sorted(results, key=lambda r: r.job_id)]
    opened = [e for e in errors if "circuit open" in e]
    assert len(opened) == 12 - 5, errors  # the first five tried, then the circuit opened
    assert all(r.state == "failed" for r in results)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a job's own retry and timeout policies (Fire.delivery) ------------------


def with_delivery(fires: list[Fire], delivery: Delivery) -> list[Fire]:
    for fire in fires:
        fire.delivery = delivery
    return fires


def test_a_jobs_retry_attempts_override_the_nodes(tmp_path: Path) -> None:
    with run_receiver(tmp_path, status=500) as receiver:
        own = with_delivery(
            make_fires(receiver.url, 1, path="/own"), Delivery(retry_max=2, initial_seconds=0.01)
        )
        plain = make_fires(receiver.url, 1, path="/plain", start=1)
        results = run(lambda ex: deliver(ex, own + plain), retry_max=0, retry_delay=0.01)
        posts = Counter(r["path"] for r in receiver.records())

    attempts = {r.execution_id: r.attempts for r in results}
    assert attempts == {own[0].execution_id: 3, plain[0].execution_id: 1}
    assert posts == {"/own": 3, "/plain": 1}


def test_a_jobs_zero_attempts_means_no_retry_on_a_retrying_node(tmp_path: Path) -> None:
    with run_receiver(tmp_path, status=500) as receiver:
        own = with_delivery(make_fires(receiver.url, 1), Delivery(retry_max=0))
        [result] = run(lambda ex: deliver(ex, own), retry_max=3, retry_delay=0.01)
        assert receiver.stats()["requests"] == 1

    assert (result.state, result.attempts) == ("failed", 1)


def test_a_jobs_timeout_overrides_the_nodes(tmp_path: Path) -> None:
    with run_receiver(tmp_path, delay=5) as receiver:
        own = with_delivery(make_fires(receiver.url, 1), Delivery(timeout_seconds=0.3))
        started = time.monotonic()
        [result] = run(lambda ex: deliver(ex, own), timeout=30.0)
        elapsed = time.monotonic() - started

    assert (result.state, result.attempts) == ("failed", 1)
    assert result.error == "timeout after 0.3s"
    assert elapsed < 4  # not the node's 30 s


def test_a_jobs_longer_timeout_is_honoured_up_to_the_node_cap(tmp_path: Path) -> None:
    """Node timeout 0.2 s, cap 0.8 s: a receiver answering in 0.5 s succeeds for
    a job asking 2 s (it gets 0.8 s), and a job asking 30 s is cut to 0.8 s
    against one that never answers."""
    (tmp_path / "slow").mkdir()
    (tmp_path / "hung").mkdir()
    with (
        run_receiver(tmp_path / "slow", delay=0.5) as slow,
        run_receiver(tmp_path / "hung", delay=60) as hung,
    ):
        patient = with_delivery(make_fires(slow.url, 1), Delivery(timeout_seconds=2.0))
        plain = make_fires(slow.url, 1, path="/plain", start=1)
        greedy = with_delivery(make_fires(hung.url, 1, start=2), Delivery(timeout_seconds=30.0))
        results = run(
            lambda ex: deliver(ex, patient + plain + greedy), timeout=0.2, timeout_max=0.8
        )

    by_id = {r.execution_id: r for r in results}
    assert by_id[patient[0].execution_id].state == "success"
    assert by_id[plain[0].execution_id].error == "timeout after 0.2s"
    assert by_id[greedy[0].execution_id].error == "timeout after 0.8s"


def test_fires_with_different_policies_are_not_batched_together(tmp_path: Path) -> None:
    shared = Delivery(retry_max=1)
    with run_receiver(tmp_path) as receiver:
        fires = make_fires(receiver.url, 4)
        with_delivery(fires[:2], shared)
        results = run(lambda ex: deliver(ex, fires))
        batches = Counter(r["batch"] for r in receiver.records())

    assert all(r.state == "success" for r in results)
    assert sorted(batches.values()) == [2, 2]  # plain pair, shared-policy pair


def test_a_jobs_backoff_spaces_its_retries(tmp_path: Path) -> None:
    """initial 0.2 s, multiplier 3: the retries come ~0.2 s and ~0.6 s apart
    (a node backoff of 0.01 s would give 0.01 and 0.02)."""
    with run_receiver(tmp_path, status=500) as receiver:
        own = with_delivery(
            make_fires(receiver.url, 1),
            Delivery(retry_max=2, initial_seconds=0.2, multiplier=3.0, cap_seconds=5.0),
        )
        run(lambda ex: deliver(ex, own), retry_delay=0.01)
        times = [r["t"] for r in receiver.records()]

    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 2
    assert 0.2 <= gaps[0] < 0.5
    assert 0.6 <= gaps[1] < 1.2


def test_a_jobs_retries_go_through_its_destinations_circuit() -> None:
    """A job allowed 8 retries against a closed port: its first five attempts
    open the destination's circuit, and its later retries fail at once there,
    as any callback's would."""
    closed = f"http://127.0.0.1:{_closed_port()}"
    own = with_delivery(make_fires(closed, 1), Delivery(retry_max=8, initial_seconds=0.01))
    [result] = run(lambda ex: deliver(ex, own), max_workers=1, timeout=2.0)
    assert (result.state, result.attempts) == ("failed", 9)
    assert result.error is not None and "circuit open" in result.error


def test_one_signers_hung_destinations_leave_workers_to_another_signer(tmp_path: Path) -> None:
    """A tenant's receivers hang on two ports: each port may hold half of the
    8 workers, so together they could hold them all; its signing secret may
    hold 6, and another tenant's fires go through the 2 left."""
    for name in ("hung1", "hung2", "ok"):
        (tmp_path / name).mkdir()
    with (
        run_receiver(tmp_path / "hung1", delay=30) as hung1,
        run_receiver(tmp_path / "hung2", delay=30) as hung2,
        run_receiver(tmp_path / "ok") as healthy,
    ):

        async def scenario(executor: Executor) -> tuple[float, list[FireResult]]:
            stuck = [
                f
                for n in range(20)
                for hung in (hung1, hung2)
                for f in make_fires(hung.url, 1, path=f"/{n}", secret="tenant-a")
            ]
            executor.submit(stuck)
            await asyncio.sleep(0.2)  # every worker tenant A may take is taken
            started = time.monotonic()
            results = await deliver(
                executor, make_fires(healthy.url, 5, secret="tenant-b"), timeout=10
            )
            return time.monotonic() - started, results

        elapsed, results = run(scenario, max_workers=8, destination_share=0.5, timeout=20.0)
        hung_concurrency = hung1.stats()["max_concurrency"] + hung2.stats()["max_concurrency"]
    assert [r.state for r in results] == ["success"] * 5
    assert elapsed < 2.0, elapsed
    assert hung_concurrency == 6  # ceil(8 x 0.75) of tenant A's POSTs at once, no more


def test_signers_sharing_a_destination_each_get_every_fire_delivered_once(
    tmp_path: Path,
) -> None:
    """Two signers' chunks interleaved on one slow destination, one signer's
    share smaller than the destination's: parked destinations are woken
    again, every fire has exactly one result, and nothing stays counted."""
    with run_receiver(tmp_path, delay=0.05) as receiver:
        fires = [
            fire
            for n in range(20)
            for k, signer in enumerate(("tenant-a", "tenant-b"))
            for fire in make_fires(
                receiver.url, 1, path=f"/{signer}/{n}", secret=signer, start=1000 * k + n
            )
        ]

        async def scenario(executor: Executor) -> tuple[list[FireResult], int, int]:
            results = await deliver(executor, fires, timeout=20)
            return results, len(executor._signer_in_flight), len(executor._parked)

        results, counted, parked = run(scenario, max_workers=4, destination_share=1.0)
        stats = receiver.stats()
    assert sorted(r.job_id for r in results) == sorted(f.job_id for f in fires)  # once each
    assert all(r.state == "success" for r in results)
    assert stats["requests"] == len(fires)
    assert stats["max_concurrency"] == 4  # both signers together use every worker
    assert (counted, parked) == (0, 0)
