"""The executor's send-time check: a destination is resolved (here through a
resolver stub), every address is checked before connecting, and the
connection goes to a checked address while the Host header stays the URL's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from scheduler0.daemon.executor.destinations import DestinationGuard, DestinationPolicy
from tests.support.receiver import run_receiver
from tests.test_executor import deliver, make_executor, make_fires

pytestmark = pytest.mark.contract


def resolving(table: dict[str, list[str]]) -> DestinationGuard:
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return DestinationGuard(DestinationPolicy, resolver=resolve)


def test_a_fire_to_a_name_resolving_to_metadata_fails_once_without_connecting() -> None:
    posted: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(200)

    async def scenario() -> None:
        executor = make_executor(
            transport=httpx.MockTransport(handler),
            guard=resolving({"rebind.example": ["169.254.169.254"]}),
            retry_max=3,
        )
        await executor.start()
        try:
            [result] = await deliver(executor, make_fires("http://rebind.example", 1))
        finally:
            await executor.stop(drain_timeout=0)
        assert (result.state, result.status_code, result.attempts) == ("failed", None, 1)
        assert result.error == (
            "destination refused: link-local address 169.254.169.254"
            " (rebind.example resolves to 169.254.169.254)"
        )

    asyncio.run(scenario())
    assert posted == []


def test_the_connection_goes_to_the_checked_address_with_the_urls_host(tmp_path: Path) -> None:
    with run_receiver(tmp_path, keep_requests=True) as receiver:

        async def scenario() -> None:
            # No transport given: the executor's own, pinned to checked addresses.
            executor = make_executor(guard=resolving({"receiver.test": ["127.0.0.1"]}))
            await executor.start()
            try:
                url = f"http://receiver.test:{receiver.port}"
                [result] = await deliver(executor, make_fires(url, 1))
            finally:
                await executor.stop(drain_timeout=0)
            assert (result.state, result.status_code) == ("success", 200), result.error

        asyncio.run(scenario())
        [(_, headers, _)] = receiver.requests()
        assert headers["host"] == f"receiver.test:{receiver.port}"
