"""Deliver accepted fires as batched, signed HTTP callbacks.

The scheduler hands accepted fires to :meth:`Executor.submit` and collects
:class:`FireResult` records with :meth:`Executor.drain_results` once per tick.

Wire format (the seed contract; each item is built by ``callback_body``):

- Fires of ONE ``submit`` call sharing ``(callback_url, signing_secret)`` (and
  their job's retry/timeout ``delivery``, below, and HTTP ``method``) form a
  batch, sent as ``POST callback_url`` with a JSON array of their payloads (a
  job of an executor uses the executor's method instead: ``GET``, ``PUT``,
  ``PATCH`` and ``DELETE`` carry the same body and headers).
- A batch whose array would exceed ``payload_max_bytes`` is split into chunks,
  each body at most ``payload_max_bytes`` (a single payload larger than that is
  sent alone, as a one-item array: it cannot be split further).
- Headers of every chunk POST:

  ``content-type: application/json``, ``user-agent: scheduler0``,
  ``x-scheduler0-node: <node id>`` (the node that sent it),
  ``x-payload-chunk-id: <n>/<total>`` (1-based chunk number / chunk count of
  the batch, e.g. ``1/1``, ``2/3``), ``x-scheduler0-batch-id: <hex>`` (the same
  for every chunk of one batch, and across retries), and the signing headers of
  :mod:`scheduler0.signing` (re-signed on each attempt): ``x-scheduler0-timestamp``
  and ``x-scheduler0-signature``, and the Standard Webhooks ``webhook-id:
  <batch id>-<n>`` (stable across retries of the chunk), ``webhook-timestamp``
  and ``webhook-signature``.

Attempts and retries: a 2xx answer is success. Any other status, a timeout
(the whole attempt bounded by ``timeout`` seconds) or a transport error is a
failed attempt. A chunk gets at most ``1 + retry_max`` attempts; retry ``k``
(k = 1, 2, ...) waits ``min(retry_delay * 2**(k-1), max(30, retry_delay))``
seconds, without holding a worker, so a failing receiver never delays other
chunks. A fire may carry its job's own ``Delivery`` (``retry`` and
``timeout_seconds`` policies, see ``delivery.py``): its chunk then follows
that plan instead, its timeout clamped to ``timeout_max``. Fires batch into
one POST only when they share their ``Delivery`` too.

An invalid URL, or a destination the policy refuses (``guard``, see
``destinations.py``: checked after DNS resolution, before connecting), fails
at once (retrying cannot help). After the final attempt every fire in the
chunk gets one result carrying that attempt's status code and error (for a
non-2xx answer ``HTTP <status>: <excerpt>``, at most ``EXCERPT_CHARS`` of the
answer without control characters).

Bulkheads: work is queued per destination (scheme, host, port). At most
``ceil(max_workers * destination_share)`` POSTs go to one destination at once,
and destinations with work take turns for free workers, so a receiver that
hangs holds only its share of workers. At most ``ceil(max_workers *
SIGNER_SHARE)`` POSTs of one signing secret (a project's, or an executor's)
are in flight at once, whatever their destinations: a destination whose next
chunk's signer is at its share waits, parked, until one of that signer's
POSTs ends, so one tenant's slow receivers on many ports leave a quarter of
the workers to the others. Bodies waiting for one destination
(queued, in flight or between retries) are bounded by ``destination_max_bytes``;
past it new fires for it are recorded ``failed`` with the reason. After
``CIRCUIT_AFTER_FAILURES`` timeouts or transport errors in a row a destination's
circuit opens: its attempts fail at once (holding no worker) for 5 s, doubling
up to 60 s while the probe after each opening fails. A fire's bytes are kept
once, in its chunk's body; a chunk refused for want of room gets no body.

Accounting: ``queue_depth`` counts fires waiting for a worker; ``in_flight``
counts fires being posted or waiting for their next attempt. Fires still queued
or in flight when :meth:`Executor.stop` gives up produce no result; the caller
treats them as lost (delivery is at-least-once, receivers de-duplicate by
``execution_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from scheduler0 import signing
from scheduler0.daemon.executor.delivery import Delivery, RetryPlan, job_plan, node_plan
from scheduler0.daemon.executor.destinations import (
    DestinationGuard,
    DestinationRefused,
    PinnedTransport,
)
from scheduler0.daemon.metrics import Metrics, status_class
from scheduler0.daemon.state.schema import run_second

log = logging.getLogger(__name__)

ERROR_MAX_CHARS = 200
SIGN_OFF_LOOP_BYTES = 64 * 1024
"""A body this large is signed in a worker thread (hashlib lets go of the
GIL while it hashes): its two HMACs take ~1.2 ms a megabyte on the event loop,
and a tick of jobs with 64 KB ``data`` each stalled every other request."""
SIGNER_SHARE = 0.75
"""The share of the workers the chunks of one signing secret (a project's, or
an executor's) may hold at once, whatever their destinations: a tenant with
slow receivers on many ports cannot hold every worker, and a node serving one
tenant still uses most of them."""
CIRCUIT_AFTER_FAILURES = 5
"""Timeouts or transport errors in a row that open a destination's circuit."""
CIRCUIT_OPEN_SECONDS = 5.0
CIRCUIT_OPEN_MAX_SECONDS = 60.0
"""An open circuit stays open this long, doubling while probes keep failing."""
EXCERPT_CHARS = 60
"""Characters of a non-2xx answer kept in the execution's error (which every
client of the project reads): enough to tell "overloaded" from "not found",
too little to carry a receiver's secrets out."""
_EXCERPT_BYTES = EXCERPT_CHARS * 4
_RESPONSE_READ_LIMIT = 64 * 1024
_TAIL_BYTES = 256
"""More than a fire's own part of its callback item (``callback_tail``)."""


@dataclass(slots=True)
class Fire:
    """One accepted (job, slot) to call back. (Not frozen: a frozen dataclass
    pays an ``object.__setattr__`` per field, thousands of times a second.)"""

    execution_id: str
    job_id: int
    slot: int  # the execution's key: unix seconds of its slot, or a manual run's key
    callback_url: str
    signing_secret: str  # the project's or its executor's
    payload: dict[str, Any] | bytes | tuple[bytes, bytes]
    """The job object sent to the receiver: a dict, its JSON, or its JSON in two
    pieces (the job's cached head, this fire's tail) joined only into the body."""
    delivery: Delivery | None = None  # the job's retry/timeout policies; None: the node's
    method: str = "POST"  # an executor's webhook_method; every other job's is POST


@dataclass(slots=True)
class FireResult:
    """How the delivery of one fire ended."""

    execution_id: str
    job_id: int
    slot: int
    state: str  # "success" | "failed"
    status_code: int | None  # of the last attempt; None when no answer came
    attempts: int
    latency_ms: int  # duration of the last attempt
    error: str | None  # capped at ERROR_MAX_CHARS
    finished_at: float  # clock() when the last attempt ended


@dataclass(slots=True)
class _Chunk:
    """One POST to make: a slice of a batch, with its serialized body."""

    url: str
    secret: str
    fires: list[Fire]
    body: bytes
    headers: dict[str, str]
    webhook_id: str  # "<batch id>-<chunk number>": the same on every attempt
    plan: RetryPlan
    attempts: int = 0
    method: str = "POST"
    refused: bool = False
    """Its destination's backlog had no room: no body was built, its fires fail."""


@dataclass(slots=True, eq=False)
class _Destination:
    """One callback destination (scheme, host, port): its bulkhead and breaker."""

    key: str
    chunks: deque[_Chunk] = field(default_factory=deque)
    in_flight: int = 0
    """POSTs to it now (at most the executor's per-destination share of workers)."""
    queued_bytes: int = 0
    """Bodies queued, being posted or waiting to retry (at most CallbackQueueMaxMb)."""
    refused: int = 0
    """Fires recorded failed because its backlog was full."""
    failures: int = 0
    """Timeouts and transport errors in a row."""
    open_for: float = 0.0
    open_until: float = 0.0
    ready: bool = False
    """In the executor's ready queue."""
    parked_for: str | None = None
    """The signing secret whose share of workers its next chunk waits for."""


def destination_of(url: str) -> str:
    """``scheme://host:port`` of ``url``: what one bulkhead and one breaker cover."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{parts.hostname or ''}:{port}"


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    latency_ms: int
    retryable: bool = True


class Executor:
    """Bounded pool of workers posting chunks through one pooled httpx client."""

    def __init__(
        self,
        *,
        max_workers: int,
        max_queue: int,
        timeout: float,
        retry_max: int,
        retry_delay: float,
        payload_max_bytes: int,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        node_id: int | None = None,
        metrics: Metrics | None = None,
        destination_share: float = 0.25,
        destination_max_bytes: int = 64 * 2**20,
        guard: DestinationGuard | None = None,
        timeout_max: float | None = None,
        random_draw: Callable[[], float] = random.random,
    ) -> None:
        if max_workers < 1 or max_queue < 1 or payload_max_bytes < 2:
            raise ValueError("max_workers, max_queue and payload_max_bytes must be positive")
        self._max_workers = max_workers
        self._max_queue = max_queue
        self._timeout = timeout
        self._plan = node_plan(retry_max=retry_max, retry_delay=retry_delay, timeout=timeout)
        self._timeout_max = max(timeout, timeout if timeout_max is None else timeout_max)
        """No job's ``timeout_seconds`` is longer than this (``JobExecutionTimeoutMax``)."""
        self._draw = random_draw
        self._payload_max_bytes = payload_max_bytes
        self._clock = clock
        self._transport = transport
        self._guard = guard
        self._metrics = metrics
        self._failures = FailureLog()
        self._headers = {"user-agent": "scheduler0"}
        if node_id is not None:
            self._headers["x-scheduler0-node"] = str(node_id)
        self._per_destination = max(1, math.ceil(max_workers * destination_share))
        self._per_signer = max(1, math.ceil(max_workers * SIGNER_SHARE))
        self._signer_in_flight: dict[str, int] = {}
        """POSTs in flight per signing secret (a project's, or an executor's)."""
        self._parked: dict[str, deque[_Destination]] = {}
        """Destinations whose next chunk waits for its signer's share of workers."""
        self._destination_max_bytes = destination_max_bytes
        self._destinations: dict[str, _Destination] = {}
        self._ready: asyncio.Queue[_Destination] = asyncio.Queue()
        self._lateness: deque[float] = deque(maxlen=4096)
        self._queued_fires = 0
        self._in_flight_fires = 0
        self._results: list[FireResult] = []
        self._workers: list[asyncio.Task[None]] = []
        self._retry_timers: dict[int, asyncio.TimerHandle] = {}  # by id(chunk)
        self._client: httpx.AsyncClient | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Open the pooled client and start ``max_workers`` worker tasks."""
        limits = httpx.Limits(
            max_connections=self._max_workers, max_keepalive_connections=self._max_workers
        )
        transport = self._transport
        if transport is None and self._guard is not None:
            transport = PinnedTransport(self._guard, limits)
        self._client = httpx.AsyncClient(
            limits=limits,
            timeout=httpx.Timeout(self._timeout),
            transport=transport,
            follow_redirects=False,
            headers=self._headers,
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"executor-worker-{i}")
            for i in range(self._max_workers)
        ]

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Let queued and in-flight chunks finish for up to ``drain_timeout``, then cancel.

        Retries falling due within the drain window still run. Whatever is left
        afterwards produces no result. New ``submit`` calls are refused.
        """
        self._stopped = True
        if drain_timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- scheduler-facing API ----------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Fires waiting for a free worker."""
        return self._queued_fires

    @property
    def in_flight(self) -> int:
        """Fires being posted, or waiting between attempts."""
        return self._in_flight_fires

    def free_capacity(self) -> int:
        """How many more fires the scheduler may submit now (never negative)."""
        return max(0, self._max_queue - self._queued_fires - self._in_flight_fires)

    def submit(self, fires: Sequence[Fire]) -> list[Fire]:
        """Queue ``fires`` for delivery, batched by (callback_url, signing_secret).

        Call on the event loop. Never drops silently: it may exceed ``max_queue``
        when the caller ignores :meth:`free_capacity`, and a chunk whose
        destination already holds ``destination_max_bytes`` of waiting bodies is
        recorded ``failed`` at once with that reason; those fires are returned.
        Raises RuntimeError after ``stop``.
        """
        return self._batch(fires, admit=True)

    def _batch(self, fires: Sequence[Fire], *, admit: bool) -> list[Fire]:
        """``submit`` (``admit``: each chunk as its destination has room) or
        ``refuse`` (no chunk admitted); returns the fires refused."""
        if self._stopped:
            raise RuntimeError("executor is stopped")
        refused: list[Fire] = []
        batches: dict[tuple[str, str, Delivery | None, str], list[Fire]] = {}
        for fire in fires:
            key = (fire.callback_url, fire.signing_secret, fire.delivery, fire.method)
            batches.setdefault(key, []).append(fire)
        for (url, secret, delivery, method), batch in batches.items():
            plan = job_plan(self._plan, delivery, self._timeout_max)
            destination = self._destination(url)
            room = functools.partial(self._has_room, destination) if admit else _no_room
            chunks = _chunk_batch(url, secret, batch, self._payload_max_bytes, plan, room, method)
            for chunk in chunks:
                if chunk.refused:
                    refused += chunk.fires
                self._enqueue(destination, chunk)
        return refused

    def refusing(self, url: str, size: int) -> bool:
        """Whether a body of ``size`` bytes (and a fire's tail) for ``url``
        would find its destination's backlog full now."""
        destination = self._destinations.get(destination_of(url))
        return destination is not None and not self._has_room(destination, size + _TAIL_BYTES)

    def refuse(self, fires: Sequence[Fire]) -> None:
        """Record ``fires`` failed, refused by their destinations' full
        backlogs, without building a body (see ``refusing``)."""
        self._batch(fires, admit=False)

    def drain_results(self) -> list[FireResult]:
        """Return the results finished since the last call, and forget them."""
        results, self._results = self._results, []
        return results

    # -- internals ---------------------------------------------------------

    def _destination(self, url: str) -> _Destination:
        key = destination_of(url)
        found = self._destinations.get(key)
        if found is None:
            found = self._destinations[key] = _Destination(key)
        return found

    def _has_room(self, destination: _Destination, size: int) -> bool:
        """Whether a body of ``size`` bytes fits in the destination's backlog
        (an empty backlog takes any one body)."""
        queued = destination.queued_bytes
        return not queued or queued + size <= self._destination_max_bytes

    def _enqueue(self, destination: _Destination, chunk: _Chunk) -> None:
        size = len(chunk.body)
        if chunk.refused:
            # The destination's bulkhead is full: record these fires as failed
            # now, with the reason, instead of holding them without bound.
            error = (
                f"not sent: {destination.queued_bytes // 2**20} MB already waiting for"
                f" {destination.key} (CallbackQueueMaxMb)"
            )
            destination.refused += len(chunk.fires)
            self._record(chunk, _Outcome(False, None, error, 0, retryable=False))
            return
        destination.queued_bytes += size
        destination.chunks.append(chunk)
        self._queued_fires += len(chunk.fires)
        self._idle.clear()
        self._offer(destination)

    def _offer(self, destination: _Destination) -> None:
        """Hand ``destination`` to a worker if it has work and room for one more
        POST, and its next chunk's signer has room for one more too (else it
        waits, parked, until that signer's next POST ends)."""
        if (
            not destination.chunks
            or destination.ready
            or destination.parked_for is not None
            or destination.in_flight >= self._per_destination
        ):
            return
        signer = destination.chunks[0].secret
        if self._signer_in_flight.get(signer, 0) >= self._per_signer:
            destination.parked_for = signer
            self._parked.setdefault(signer, deque()).append(destination)
            return
        destination.ready = True
        self._ready.put_nowait(destination)

    def _unpark(self, signer: str) -> None:
        """One of ``signer``'s POSTs ended: offer the destinations waiting for
        it, as many as it has room for now (waking them all would queue every
        one of them for one free slot, each POST's end)."""
        parked = self._parked.get(signer)
        if not parked:
            return
        free = self._per_signer - self._signer_in_flight.get(signer, 0)
        while parked and free > 0:
            destination = parked.popleft()
            destination.parked_for = None
            self._offer(destination)
            if destination.ready:
                free -= 1
        if not parked:
            del self._parked[signer]

    def _requeue(self, chunk: _Chunk) -> None:
        self._retry_timers.pop(id(chunk), None)
        self._in_flight_fires -= len(chunk.fires)
        destination = self._destination(chunk.url)
        destination.chunks.append(chunk)
        self._queued_fires += len(chunk.fires)
        self._offer(destination)

    def _settle(self, count: int) -> None:
        self._in_flight_fires -= count
        if self._queued_fires == 0 and self._in_flight_fires == 0:
            self._idle.set()

    async def _work(self) -> None:
        signers = self._signer_in_flight
        while True:
            destination = await self._ready.get()
            destination.ready = False
            if not destination.chunks:
                continue
            signer = destination.chunks[0].secret
            if signers.get(signer, 0) >= self._per_signer:
                self._offer(destination)  # its signer filled its share meanwhile: parked
                continue
            destination.in_flight += 1
            signers[signer] = signers.get(signer, 0) + 1
            chunk = destination.chunks.popleft()
            self._offer(destination)  # its next chunk, to another worker, within its share
            # The chunk lives only in _deliver's frame: an idle worker that kept
            # its last chunk (fires, payloads, body) held MaxWorkers x thousands
            # of fires alive, ~250 MB at 10,000 fires/s.
            try:
                await self._deliver(destination, chunk)
                del chunk
            finally:
                destination.in_flight -= 1
                left = signers[signer] - 1
                if left:
                    signers[signer] = left
                else:
                    del signers[signer]
                self._offer(destination)
                self._unpark(signer)

    async def _deliver(self, destination: _Destination, chunk: _Chunk) -> None:
        count = len(chunk.fires)
        self._queued_fires -= count
        self._in_flight_fires += count
        outcome = await self._attempt_guarded(destination, chunk)
        if outcome.ok or not outcome.retryable or chunk.attempts > chunk.plan.retry_max:
            destination.queued_bytes -= len(chunk.body)
            self._record(chunk, outcome)
            self._settle(count)
        else:
            self._schedule_retry(chunk)

    async def _attempt_guarded(self, destination: _Destination, chunk: _Chunk) -> _Outcome:
        """An attempt through the destination's circuit breaker: while the circuit
        is open the attempt fails at once, holding no worker and no connection."""
        now = time.monotonic()
        if now < destination.open_until:
            chunk.attempts += 1
            return _Outcome(
                False,
                None,
                f"not sent: {destination.key} failed {destination.failures} times in a row;"
                f" circuit open for {destination.open_until - now:.0f} s more",
                0,
            )
        outcome = await self._attempt(chunk)
        if outcome.status_code is None and outcome.retryable:
            destination.failures += 1
            if destination.failures >= CIRCUIT_AFTER_FAILURES:
                destination.open_for = min(
                    max(destination.open_for * 2, CIRCUIT_OPEN_SECONDS), CIRCUIT_OPEN_MAX_SECONDS
                )
                destination.open_until = time.monotonic() + destination.open_for
                log.warning(
                    "circuit open for %s: %d failures in a row (%s); attempts fail at once"
                    " for %.0f s",
                    destination.key,
                    destination.failures,
                    outcome.error,
                    destination.open_for,
                )
        else:
            if destination.open_for:
                log.info("circuit closed for %s: it answers again", destination.key)
            destination.failures = 0
            destination.open_for = 0.0
        return outcome

    def lateness(self) -> tuple[float, float]:
        """(p50, p99) seconds from slot to completed callback, over recent deliveries."""
        values = sorted(self._lateness)
        if not values:
            return 0.0, 0.0
        return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.99))]

    def destinations(self, limit: int = 5) -> list[dict[str, Any]]:
        """The destinations with the most work waiting, worst first."""
        busy = sorted(
            (d for d in self._destinations.values() if d.queued_bytes or d.in_flight or d.refused),
            key=lambda d: (d.queued_bytes, d.in_flight),
            reverse=True,
        )
        return [
            {
                "destination": d.key,
                "queued_chunks": len(d.chunks),
                "in_flight_posts": d.in_flight,
                "backlog_bytes": d.queued_bytes,
                "refused_fires": d.refused,
                "circuit_open": time.monotonic() < d.open_until,
            }
            for d in busy[:limit]
        ]

    @property
    def backlog_bytes(self) -> int:
        """Bytes of callback bodies waiting to be sent or retried, all destinations."""
        return sum(d.queued_bytes for d in self._destinations.values())

    def _schedule_retry(self, chunk: _Chunk) -> None:
        plan = chunk.plan
        delay = plan.delay(chunk.attempts, self._draw() if plan.jitter else 0.0)
        timer = asyncio.get_running_loop().call_later(delay, self._requeue, chunk)
        self._retry_timers[id(chunk)] = timer

    async def _attempt(self, chunk: _Chunk) -> _Outcome:
        chunk.attempts += 1
        timestamp = int(self._clock())
        if len(chunk.body) < SIGN_OFF_LOOP_BYTES:
            headers = chunk.headers | _signed(chunk, timestamp)
        else:
            headers = chunk.headers | await asyncio.to_thread(_signed, chunk, timestamp)
        timeout = chunk.plan.timeout_seconds
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                if self._guard is not None:
                    await self._guard.check(chunk.url)
                status_code, snippet = await self._post(
                    chunk.url, chunk.body, headers, timeout, chunk.method
                )
        except DestinationRefused as exc:
            return _failure(started, f"destination refused: {exc}", retryable=False)
        except (TimeoutError, httpx.TimeoutException):
            return _failure(started, f"timeout after {timeout:g}s")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            return _failure(started, f"invalid callback url: {exc}", retryable=False)
        except Exception as exc:  # any transport failure is a failed attempt, never a crash
            return _failure(started, f"{type(exc).__name__}: {exc}".rstrip(": "))
        latency_ms = _elapsed_ms(started)
        if self._metrics is not None:
            self._metrics.callback_latency.observe(latency_ms / 1000)
        if 200 <= status_code < 300:
            return _Outcome(True, status_code, None, latency_ms)
        error = f"HTTP {status_code}" + (f": {snippet}" if snippet else "")
        return _Outcome(False, status_code, error, latency_ms)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float, method: str = "POST"
    ) -> tuple[int, str]:
        """POST ``body`` (or send it with an executor's ``method``); return the
        status and the start of the response text.
        A job's own timeout replaces the client's for this request only.

        The response is read up to ``_RESPONSE_READ_LIMIT`` bytes only: small bodies
        are drained so the connection is reused, huge ones are abandoned (the
        connection is then closed) instead of being buffered.
        """
        assert self._client is not None, "Executor.start() was not awaited"
        stream = (
            self._client.stream(method, url, content=body, headers=headers)
            if timeout == self._timeout
            else self._client.stream(
                method, url, content=body, headers=headers, timeout=httpx.Timeout(timeout)
            )
        )
        async with stream as response:
            head = b""
            read = 0
            async for part in response.aiter_bytes():
                if len(head) < _EXCERPT_BYTES:
                    head += part[:_EXCERPT_BYTES]
                read += len(part)
                if read > _RESPONSE_READ_LIMIT:
                    break
            return response.status_code, excerpt(head)

    def _record(self, chunk: _Chunk, outcome: _Outcome) -> None:
        state = "success" if outcome.ok else "failed"
        error = outcome.error[:ERROR_MAX_CHARS] if outcome.error else None
        finished_at = self._clock()
        metrics = self._metrics
        if metrics is not None:
            metrics.callbacks.labels(status_class(outcome.status_code, error)).inc(len(chunk.fires))
        if outcome.ok:
            # Each fire's lateness once, for /status and for the metric.
            lateness = [finished_at - run_second(fire.slot) for fire in chunk.fires]
            self._lateness.extend(lateness)
            if metrics is not None:
                metrics.delivered(lateness)
        else:
            self._failures.failed(chunk.url, len(chunk.fires), chunk.attempts, error)
        self._results.extend(
            FireResult(
                fire.execution_id,
                fire.job_id,
                fire.slot,
                state,
                outcome.status_code,
                chunk.attempts,
                outcome.latency_ms,
                error,
                finished_at,
            )
            for fire in chunk.fires
        )


def _signed(chunk: _Chunk, timestamp: int) -> dict[str, str]:
    """The signing headers of ``chunk`` sent at ``timestamp`` (both schemes)."""
    return signing.sign(chunk.secret, chunk.body, timestamp) | signing.sign_standard(
        chunk.secret, chunk.webhook_id, chunk.body, timestamp
    )


def _chunk_batch(
    url: str,
    secret: str,
    fires: list[Fire],
    max_bytes: int,
    plan: RetryPlan,
    admit: Callable[[int], bool] = lambda size: True,
    method: str = "POST",
) -> Iterable[_Chunk]:
    """Split one batch into chunks whose JSON-array bodies fit in ``max_bytes``.

    A chunk's body is built only if ``admit(its size)`` when it is its turn
    (else it comes ``refused``, without one), and each fire's own bytes are
    let go as soon as its chunk is done: a tick's fires for a destination
    whose backlog is full cost no copy, and the batch never exists twice."""
    encoded = [_encoded(fire.payload) for fire in fires]
    sizes = [
        len(item) if isinstance(item, bytes) else len(item[0]) + len(item[1]) for item in encoded
    ]
    groups = _split_by_size(sizes, max_bytes)
    batch_id = os.urandom(8).hex()
    total = len(groups)
    start = 0
    for number, end in enumerate(groups, start=1):
        size = sum(sizes[start:end]) + (end - start) + 1  # "[", the items, a "," or "]" each
        refused = not admit(size)
        body = b"" if refused else _array(encoded[start:end])
        for index in range(start, end):
            encoded[index] = fires[index].payload = b""  # its bytes live on in the body only
        headers = {
            "content-type": "application/json",
            "x-payload-chunk-id": f"{number}/{total}",
            "x-scheduler0-batch-id": batch_id,
        }
        webhook_id = f"{batch_id}-{number}"
        chunk = _Chunk(url, secret, fires[start:end], body, headers, webhook_id, plan, 0, method)
        chunk.refused = refused
        yield chunk
        start = end


def _no_room(size: int) -> bool:
    return False


def _encoded(payload: dict[str, Any] | bytes | tuple[bytes, bytes]) -> bytes | tuple[bytes, bytes]:
    return payload if isinstance(payload, bytes | tuple) else orjson.dumps(payload)


def _array(items: list[bytes | tuple[bytes, bytes]]) -> bytes:
    """``[`` + items joined by ``,`` + ``]``, in one copy (a two-piece item too)."""
    pieces: list[bytes] = []
    for item in items:
        pieces.append(b",")
        if isinstance(item, bytes):
            pieces.append(item)
        else:
            pieces += item
    if pieces:
        pieces[0] = b"["
    else:
        pieces.append(b"[")
    pieces.append(b"]")
    return b"".join(pieces)


def _split_by_size(sizes: list[int], max_bytes: int) -> list[int]:
    """Return the end index of each chunk, given each item's encoded size; a
    body is ``[`` + items joined by ``,`` + ``]``."""
    ends: list[int] = []
    size = 1  # the opening "["; each item then adds its length plus "," or "]"
    for index, length in enumerate(sizes):
        grown = size + length + 1
        if grown > max_bytes and size > 1:
            ends.append(index)
            grown = 1 + length + 1
        size = grown
    ends.append(len(sizes))
    return ends


def excerpt(head: bytes) -> str:
    """At most ``EXCERPT_CHARS`` of an answer's start, each run of control,
    bidi or space characters shown as one space (the error is shown in
    terminals and tables)."""
    text = head.decode("utf-8", "replace")
    words = "".join(ch if ch.isprintable() else " " for ch in text).split()
    return " ".join(words)[:EXCERPT_CHARS].rstrip()


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _failure(started: float, error: str, *, retryable: bool = True) -> _Outcome:
    return _Outcome(False, None, error, _elapsed_ms(started), retryable)


class FailureLog:
    """One WARNING per destination (scheme, host, port) per ``every`` seconds for
    failed callbacks, with the count of failures it stood for: a receiver that
    is down for an hour gives a line a minute, not a line per fire."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def failed(self, url: str, fires: int, attempts: int, error: str | None) -> None:
        parts = urlsplit(url)
        destination = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        now = self._clock()
        last = self._last.get(destination)
        if last is not None and now - last < self._every:
            self._suppressed[destination] = self._suppressed.get(destination, 0) + fires
            return
        self._last[destination] = now
        more = self._suppressed.pop(destination, 0)
        log.warning(
            "callbacks to %s failed: %d fire(s) after %d attempt(s): %s%s",
            destination,
            fires,
            attempts,
            error,
            f" (and {more} more fire(s) failed since the last report)" if more else "",
        )
