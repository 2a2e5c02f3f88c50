"""Large creates take turns, one caller at a time each.

Every node applies the replicated log on one thread, in order: a command of
10,000 new jobs holds it for a good part of a second, and everything proposed
after it (another tenant's one-job write, the scheduler's fires) waits behind
it. Eight such requests of one credential at once queued seconds of work
ahead of every other caller: their writes timed out (503) and their slots
were recorded missed. So a ``POST /jobs`` of more than ``LARGE_CREATE_JOBS``
jobs waits for a *turn* before its validation and its proposal: at most
``TURNS_AT_ONCE`` are prepared or proposed at once on a node, at most one per
caller (a credential, or the operator), and the callers waiting take turns in
the order they first asked, not one caller's queue after another's. A caller
with ``WAITING_PER_CALLER`` large creates already waiting is answered 429.

Smaller creates, and every other write, take no turn: the log applies each
in well under a tick.

Work done off the event loop (``http.off_loop``: reads of many rows, the
JSON of a page, a batch's validation) takes a *share* the same way, in
``off_loop_shares``: at most ``OFF_LOOP_PER_CALLER`` of one caller's at once,
``OFF_LOOP_AT_ONCE`` on the node, callers in turn; a read is refused (429)
past ``OFF_LOOP_WAITING_PER_CALLER`` of its caller's waiting, a write waits. Every such thread holds
the GIL while it works, and each one more slows the event loop that serves
every other caller and fires every job: sixteen deep reads of one
credential at once made another credential's light requests 12 times
slower (p99 61 ms to 723 ms). The caller is the credential the request
authenticated with; an operator, or a request without good credentials,
is told apart by its peer address (``share_off_loop``, set for each
request by the auth middleware).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from scheduler0.errors import TooManyRequests

LARGE_CREATE_JOBS = 100
"""Jobs in one ``POST /jobs`` above which it takes a turn (about a millisecond
of apply on every node at 100)."""
TURNS_AT_ONCE = 2
"""Large creates prepared or proposed at once on a node: two, so that one is
validated while the other is applied."""
LARGE_CREATE_BYTES = 64 * 1024
"""A ``POST /jobs`` body larger than this, from a caller whose waiting room is
full, is answered 429 before it is read (a large create's, or a single job's
with a large ``data``: the caller is over its share either way)."""
WAITING_PER_CALLER = 4
"""Large creates of one caller waiting for a turn; past it, 429. Each holds
its parsed body while it waits."""

OFF_LOOP_PER_CALLER = 2
"""One caller's work off the event loop at once (two: a caller's small read
need not wait for the end of its own large one)."""
OFF_LOOP_AT_ONCE = 8
"""Work off the event loop at once on a node, every caller's: four callers
busy at once, below the 40 threads of the pool that runs it."""
OFF_LOOP_WAITING_PER_CALLER = 64
"""One caller's requests waiting for a share; past it, 429."""


class Turns:
    """Turns for ``at_once`` holders, at most ``per_key`` per key, granted to
    the waiting keys in round-robin order (``take``). ``what`` names the
    requests in the 429 that refuses a key past ``waiting_per_key``."""

    def __init__(
        self,
        at_once: int = TURNS_AT_ONCE,
        waiting_per_key: int = WAITING_PER_CALLER,
        *,
        per_key: int = 1,
        what: str = "large creates",
    ) -> None:
        self._at_once = at_once
        self._waiting_per_key = waiting_per_key
        self._per_key = per_key
        self._what = what
        self._holders: Counter[str] = Counter()
        """Turns held, by key (keys holding none are removed)."""
        self._held = 0
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        """Keys with requests waiting, in turn order; each key's in arrival order."""

    @property
    def holders(self) -> int:
        return self._held

    def waiting(self, key: str) -> int:
        return len(self._waiting.get(key, ()))

    def check(self, key: str) -> None:
        """Raise ``TooManyRequests`` if ``key`` has ``waiting_per_key``
        requests waiting already."""
        waiting = self.waiting(key)
        if waiting >= self._waiting_per_key:
            raise TooManyRequests(
                f"{waiting} {self._what} of this caller are already waiting for their"
                f" turn (at most {self._waiting_per_key}); retry when one has finished"
            )

    @contextlib.asynccontextmanager
    async def take(self, key: str, *, refuse: bool = True) -> AsyncIterator[None]:
        """Wait for ``key``'s turn, hold it for the block, then pass it on.
        Raises ``TooManyRequests`` if ``key`` already has
        ``waiting_per_key`` requests waiting, unless not to ``refuse``."""
        if refuse:
            self.check(key)
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(granted)
        self._grant()
        try:
            await granted
        except BaseException:
            if granted.done() and not granted.cancelled():
                self._release(key)  # granted just as the waiter gave up
            else:
                self._forget(key, granted)
            raise
        try:
            yield
        finally:
            self._release(key)

    def _release(self, key: str) -> None:
        self._held -= 1
        self._holders[key] -= 1
        if not self._holders[key]:
            del self._holders[key]
        self._grant()

    def _forget(self, key: str, granted: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(granted)
        if not queue:
            del self._waiting[key]

    def _grant(self) -> None:
        """Give free turns to the waiting keys below ``per_key``, one to each
        in turn order per pass; a key served goes to the back of the order if
        more of it wait."""
        granted = True
        while granted and self._held < self._at_once:
            granted = False
            for key in list(self._waiting):
                if self._held >= self._at_once:
                    return
                if self._holders[key] >= self._per_key:
                    continue
                queue = self._waiting[key]
                while queue and queue[0].done():  # its waiter gave up
                    queue.popleft()
                if not queue:
                    del self._waiting[key]
                    continue
                queue.popleft().set_result(None)
                self._holders[key] += 1
                self._held += 1
                granted = True
                if queue:
                    self._waiting.move_to_end(key)
                else:
                    del self._waiting[key]


def off_loop_shares() -> Turns:
    """The node's shares of work off the event loop (see the module's doc)."""
    return Turns(
        OFF_LOOP_AT_ONCE,
        OFF_LOOP_WAITING_PER_CALLER,
        per_key=OFF_LOOP_PER_CALLER,
        what="requests",
    )


@dataclass(frozen=True, slots=True)
class Share:
    """Whose share a request's work off the loop takes, and whether it may be
    refused (429) when too many of that caller's wait: only a read's. A
    write's work off the loop may come after its command committed (reading
    back what it made), and a 429 there would tell its client to retry what
    is done."""

    shares: Turns
    key: str
    refuse: bool


_SHARE: ContextVar[Share | None] = ContextVar("off_loop_share", default=None)


@contextlib.contextmanager
def share_off_loop(share: Share) -> Iterator[None]:
    """Within the block (one request), work off the loop takes ``share``."""
    token = _SHARE.set(share)
    try:
        yield
    finally:
        _SHARE.reset(token)


def off_loop_share() -> Share | None:
    """The share of the request being served, if any."""
    return _SHARE.get()
