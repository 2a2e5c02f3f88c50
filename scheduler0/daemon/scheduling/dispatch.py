"""Hand accepted (job, slot) pairs to the executor as callbacks.

Only pairs the state machine accepted (a ``SlotsFired`` or an
``ExecutionsRedispatched`` result) come here. Each becomes one ``Fire`` whose
payload is the job's cached ``PayloadHead`` and this fire's fields, joined only
into the POST body (no row read, dict, JSON encode or copy of the job's data
per fire; see ``callback_body``). Each pair
sent is recorded in ``sent`` until its result is recorded. A fire of a job
with an ``overlap`` policy goes through ``in_flight`` (``overlap.InFlight``),
which holds it while the job's previous execution runs.

A fire decided ahead of its slot (``Firing``'s ``fire_ahead``; also an adopted
one whose slot is still ahead) is built here at once and *held* until its
slot: ``release`` hands it to the executor then. Its job is checked again at
release: unchanged, it goes as built; edited, moved to another owner or
reloaded, its row is read again and it goes with the job's current callback
(its slot stays: a schedule edited after the run was decided takes effect
after it); paused or deleted meanwhile, it is not sent and its execution is
recorded ``skipped`` with the reason (``on_cancelled``). A held fire of a
job with an overlap policy enters ``in_flight`` at its slot, not when it is
held; one of a parked job is recorded refused at its slot unless its
destination has room again then.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Mapping, Sequence

from scheduler0.daemon.executor.callback_body import callback_tail, payload_head
from scheduler0.daemon.executor.http import Fire, FireResult
from scheduler0.daemon.scheduling.overlap import FireSubmitter, InFlight
from scheduler0.daemon.scheduling.owned import OwnedJob, Parked, PayloadHead
from scheduler0.daemon.scheduling.policy import fire_policy_of
from scheduler0.daemon.scheduling.stats import SchedulerStats
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import execution_id, run_second

SEND, ADMIT, REFUSE = 0, 1, 2
"""What a held fire's release does when its job is unchanged: hand it to the
executor; admit it through ``in_flight`` first (an overlap policy); record it
refused (its job was parked: its destination's backlog was full)."""

Held = tuple[Fire, OwnedJob | None, int | None, int]
"""A fire held until its slot: (the fire, its job's owned entry when built,
the job's slot before it for ``last_execution_date``, ``SEND``, ``ADMIT`` or
``REFUSE``)."""


class HeldFires:
    """Fires held until their slot, released by slot and, within a slot, in
    the order held: a list per slot and a heap of the slots (a heap of every
    fire cost a push and a pop of ~log2(20,000) tuple comparisons each, at
    10,000 fires a second decided 2 s ahead)."""

    def __init__(self) -> None:
        self._by_slot: dict[int, list[Held]] = {}
        self._slots: list[int] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, slot: int, held: Held) -> None:
        waiting = self._by_slot.get(slot)
        if waiting is None:
            waiting = self._by_slot[slot] = []
            heapq.heappush(self._slots, slot)
        waiting.append(held)
        self._count += 1

    def next_slot(self) -> int | None:
        return self._slots[0] if self._slots else None

    def pop_due(self, now: float) -> list[Held]:
        """Every fire whose slot is at or before ``now``, in release order."""
        due: list[Held] = []
        slots = self._slots
        while slots and slots[0] <= now:
            due.extend(self._by_slot.pop(heapq.heappop(slots)))
        self._count -= len(due)
        return due


class Dispatcher:
    def __init__(
        self,
        *,
        queries: Queries,
        executor: FireSubmitter,
        payloads: dict[int, PayloadHead | Parked],
        sent: set[tuple[int, int]],
        in_flight: InFlight | None = None,
        jobs: Mapping[int, OwnedJob] | None = None,
        clock: Callable[[], float] | None = None,
        stats: SchedulerStats | None = None,
        on_cancelled: Callable[[list[FireResult]], None] | None = None,
    ) -> None:
        self._queries = queries
        self._executor = executor
        self.in_flight = InFlight(executor) if in_flight is None else in_flight
        """The executions of overlap-policy jobs in flight (read by ``Firing``)."""
        self._payloads = payloads
        """The owned set's cache (``OwnedJobs.payloads``); missing heads are read here."""
        self._sent = sent
        """(job, slot) pairs sent and not yet recorded (``ResultsBatcher.sent``)."""
        self._jobs: Mapping[int, OwnedJob] = {} if jobs is None else jobs
        """The owned set's jobs (``OwnedJobs.jobs``): a held fire's job is
        unchanged while the same object is there."""
        self._clock = clock
        """None: nothing is held (every fire goes to the executor at once)."""
        self._stats = stats
        self._on_cancelled = on_cancelled
        self.held = HeldFires()
        """Fires built ahead of their slot (``release``)."""

    def dispatch(self, accepted: list[list[int]], previous: Mapping[int, int | None]) -> None:
        """Submit one ``Fire`` per accepted ``[job_id, slot]`` (a job deleted
        meanwhile is skipped); ``previous`` gives each job's last fired slot
        before this one, for ``last_execution_date``.

        A job without policies whose fire the executor refused (its
        destination's backlog was full) is *parked*: its cached head is
        replaced by a ``Parked`` entry (URL, secret, method, the head's size).
        While that destination has no room for their bodies, their fires are
        recorded refused without a body and without reading a row; as room
        comes back, as many as fit (all, once its backlog is empty) have their
        heads read again. So a
        receiver that never answers holds its backlog's bytes, not also every
        job's payload."""
        payloads = self._payloads
        executor = self._executor
        missing: list[list[int]] = []
        parked: dict[str, list[list[int]]] = {}
        for entry in accepted:
            cached = payloads.get(entry[0])
            if cached is None:
                missing.append(entry)
            elif isinstance(cached, Parked):
                parked.setdefault(cached.callback_url, []).append(entry)
        for url, entries in parked.items():
            # As many as its backlog has room for, in order (an empty backlog
            # takes them all: those it then refuses are parked again).
            needed = 0
            for entry in entries:
                cached = payloads[entry[0]]
                assert isinstance(cached, Parked)
                needed += cached.size
                if executor.refusing(url, needed):
                    break
                del payloads[entry[0]]  # its head is read below
                missing.append(entry)
        if missing:
            for job_id, row in self._queries.fire_payloads(missing).items():
                first = payload_head(row)
                payloads[job_id] = (*first, fire_policy_of(row["policy"]), row["method"])
        out: list[Fire] = []
        refused: list[Fire] = []
        sent = self._sent
        jobs = self._jobs
        ahead_of = -1 if self._clock is None else self._clock()
        """Slots after it are held (-1: none is; manual runs' slots are negative)."""
        earlier: dict[int, int | None] = {}
        """Jobs fired more than once here (catchup=all): the slot before."""
        for job_id, slot in accepted:
            cached = payloads.get(job_id)
            if cached is None:
                continue  # deleted meanwhile
            exec_id = execution_id(job_id, slot)
            last = earlier[job_id] if job_id in earlier else previous.get(job_id)
            earlier[job_id] = slot
            sent.add((job_id, slot))
            how = SEND
            if isinstance(cached, Parked):
                fire = Fire(exec_id, job_id, slot, cached.callback_url, cached.secret, b"")
                fire.method = cached.method
                how = REFUSE
            else:
                head, callback_url, secret, policy, method = cached
                body = (head, callback_tail(exec_id, run_second(slot), last))
                fire = Fire(exec_id, job_id, slot, callback_url, secret, body, method=method)
                if policy is not None:
                    fire.delivery = policy.delivery
                    if policy.overlap != "allow":
                        how = ADMIT
            if ahead_of >= 0 and slot > ahead_of:
                # Admitted to ``in_flight`` or refused at its slot, not now: it
                # must not wait for itself, nor be recorded before its slot.
                self.held.push(slot, (fire, jobs.get(job_id), last, how))
            elif how == REFUSE:
                refused.append(fire)
            elif how == SEND or self.in_flight.admit(fire):
                out.append(fire)
            # else: held until the job's running execution finishes
        if refused:
            executor.refuse(refused)
        if out:
            self._park(executor.submit(out))

    def release(self, now: float) -> None:
        """Hand the held fires whose slot has come to the executor (see the
        module's docstring for a job that changed meanwhile)."""
        held = self.held
        first = held.next_slot()
        if first is None or first > now:
            return
        jobs = self._jobs
        in_flight = self.in_flight
        out: list[Fire] = []
        refused: list[Fire] = []
        needed: dict[str, int] = {}
        """Per parked destination, the bytes of the fires released to it here."""
        changed: list[tuple[Fire, int | None]] = []
        for fire, job, last, how in held.pop_due(now):
            if job is None or jobs.get(fire.job_id) is not job:
                changed.append((fire, last))
            elif how == REFUSE:
                if self._still_refused(fire, needed):
                    refused.append(fire)
                else:  # its destination has room again: sent, built from its row
                    changed.append((fire, last))
            elif how == SEND or in_flight.admit(fire):
                out.append(fire)
        if changed:
            out.extend(self._rebuild(changed, now))
        if self._stats is not None:
            self._stats.recent_lag.extend(now - fire.slot for fire in out)
        if refused:
            self._executor.refuse(refused)
        if out:
            self._park(self._executor.submit(out))

    def _still_refused(self, fire: Fire, needed: dict[str, int]) -> bool:
        """A held fire of a parked job, at its slot: whether its destination
        still has no room for it (with those of ``needed`` released before)."""
        cached = self._payloads.get(fire.job_id)
        if not isinstance(cached, Parked):
            return False
        url = cached.callback_url
        needed[url] = needed.get(url, 0) + cached.size
        return self._executor.refusing(url, needed[url])

    def _rebuild(self, changed: list[tuple[Fire, int | None]], now: float) -> list[Fire]:
        """Fires whose job changed while they were held: built again from the
        job's row as it is now; those of jobs paused or deleted meanwhile are
        recorded ``skipped`` instead of sent."""
        rows = self._queries.fire_payloads([[fire.job_id, fire.slot] for fire, _ in changed])
        out: list[Fire] = []
        cancelled: list[FireResult] = []
        for fire, last in changed:
            row = rows.get(fire.job_id)
            reason = not_sent_because(row)
            if reason is not None:
                cancelled.append(
                    FireResult(
                        fire.execution_id,
                        fire.job_id,
                        fire.slot,
                        "skipped",
                        None,
                        0,
                        0,
                        reason,
                        now,
                    )
                )
                continue
            assert row is not None  # a deleted job has a reason
            head, callback_url, secret = payload_head(row)
            policy = fire_policy_of(row["policy"])
            body = (head, callback_tail(fire.execution_id, run_second(fire.slot), last))
            rebuilt = Fire(
                fire.execution_id,
                fire.job_id,
                fire.slot,
                callback_url,
                secret,
                body,
                method=row["method"],
            )
            if policy is not None:
                rebuilt.delivery = policy.delivery
                if policy.overlap != "allow" and not self.in_flight.admit(rebuilt):
                    continue  # edited to wait for its running execution
            out.append(rebuilt)
        if cancelled:
            if self._stats is not None:
                self._stats.cancelled += len(cancelled)
            if self._on_cancelled is not None:
                self._on_cancelled(cancelled)
        return out

    def _park(self, refused: Sequence[Fire]) -> None:
        """Park the jobs (without policies) of fires the executor refused."""
        payloads = self._payloads
        for fire in refused:
            cached = payloads.get(fire.job_id)
            if cached is None or isinstance(cached, Parked) or cached[3] is not None:
                continue
            head, url, secret, _, method = cached
            payloads[fire.job_id] = Parked(len(head), url, secret, method)


def not_sent_because(row: sqlite3.Row | None) -> str | None:
    """Why a held fire whose job changed is not sent at its slot (its job's
    row as it is now, None if deleted), or None."""
    if row is None:
        return "job deleted before its slot"
    if row["paused"]:
        return "job paused before its slot"
    return None
