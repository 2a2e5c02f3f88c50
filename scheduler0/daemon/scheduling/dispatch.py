"""Hand accepted (job, slot) pairs to the executor as callbacks.

Only pairs the state machine accepted (a ``SlotsFired`` or an
``ExecutionsRedispatched`` result) come here. Each becomes one ``Fire`` whose
body is the job's cached ``PayloadHead`` plus this fire's fields (a byte join:
no row read, dict or JSON encode per fire; see ``callback_body``). Each pair
sent is recorded in ``sent`` until its result is recorded. A fire of a job
with an ``overlap`` policy goes through ``in_flight`` (``overlap.InFlight``),
which holds it while the job's previous execution runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from scheduler0.daemon.executor.callback_body import callback_item, payload_head
from scheduler0.daemon.executor.http import Fire
from scheduler0.daemon.scheduling.overlap import FireSubmitter, InFlight
from scheduler0.daemon.scheduling.owned import PayloadHead
from scheduler0.daemon.scheduling.policy import fire_policy_of
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import execution_id, run_second


class Dispatcher:
    def __init__(
        self,
        *,
        queries: Queries,
        executor: FireSubmitter,
        payloads: dict[int, PayloadHead],
        sent: set[tuple[int, int]],
        in_flight: InFlight | None = None,
    ) -> None:
        self._queries = queries
        self._executor = executor
        self.in_flight = InFlight(executor) if in_flight is None else in_flight
        """The executions of overlap-policy jobs in flight (read by ``Firing``)."""
        self._payloads = payloads
        """The owned set's cache (``OwnedJobs.payloads``); missing heads are read here."""
        self._sent = sent
        """(job, slot) pairs sent and not yet recorded (``ResultsBatcher.sent``)."""

    def dispatch(self, accepted: list[list[int]], previous: Mapping[int, int | None]) -> None:
        """Submit one ``Fire`` per accepted ``[job_id, slot]`` (a job deleted
        meanwhile is skipped); ``previous`` gives each job's last fired slot
        before this one, for ``last_execution_date``."""
        payloads = self._payloads
        missing = [entry for entry in accepted if entry[0] not in payloads]
        if missing:
            for job_id, row in self._queries.fire_payloads(missing).items():
                first = payload_head(row)
                payloads[job_id] = (*first, fire_policy_of(row["policy"]), row["method"])
        out: list[Fire] = []
        sent = self._sent
        earlier: dict[int, int | None] = {}
        """Jobs fired more than once here (catchup=all): the slot before."""
        for job_id, slot in accepted:
            cached = payloads.get(job_id)
            if cached is None:
                continue  # deleted meanwhile
            head, callback_url, secret, policy, method = cached
            exec_id = execution_id(job_id, slot)
            last = earlier[job_id] if job_id in earlier else previous.get(job_id)
            earlier[job_id] = slot
            body = callback_item(head, exec_id, run_second(slot), last)
            sent.add((job_id, slot))
            fire = Fire(exec_id, job_id, slot, callback_url, secret, body, method=method)
            if policy is not None:
                fire.delivery = policy.delivery
                if policy.overlap != "allow" and not self.in_flight.admit(fire):
                    continue  # held until the job's running execution finishes
            out.append(fire)
        if out:
            self._executor.submit(out)
