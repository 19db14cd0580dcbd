"""The ``weights`` processor: the proxy sets its miners' weights on chain itself.

Every ``interval`` it takes the weights of ``GET /api/v1/validator/weights``
(the moving average of rewards), submits them through a
:class:`~miners.weights.WeightsSetter` (which respects the subnet's rate
limit) and records each submission and its outcome as a ``WeightsSubmitted``
event in the log's ``ledger-weights`` stream, chained, checkpointed and
audited like the tasks. It appends to the log itself on the embedded log; on Kafka it
runs on the leader only and ``record`` sends each event to the owner of the stream's
partition (:class:`~processors.ledger_commands.LedgerThroughCommands`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from events import Envelope, EventLog
from events.ledger import WeightsSubmitted, record_weights
from miners.weights import Skipped, WeightsSetter
from processors.evaluation import Evaluations

log = logging.getLogger(__name__)

# Appends a submission's event to the ``ledger-weights`` stream: (event, at, actor).
RecordWeights = Callable[[WeightsSubmitted, datetime, str], Awaitable[Envelope]]


class WeightsProcessor:
    def __init__(
        self,
        event_log: EventLog,
        evaluations: Evaluations,
        setter: WeightsSetter,
        clock: Callable[[], datetime],
        *,
        record: RecordWeights | None = None,
    ) -> None:
        self._log = event_log
        self._evaluations = evaluations
        self._setter = setter
        self._clock = clock
        self._record = record or self._append

    async def tick(self) -> WeightsSubmitted | Skipped:
        weights = await self._evaluations.weights()
        if not weights:
            return Skipped("no miner has a reward yet")
        outcome = await self._setter.submit(weights)
        if isinstance(outcome, Skipped):
            log.info("weights not submitted: %s", outcome.reason)
            return outcome
        await self._record(outcome, self._clock(), "weights")
        if outcome.dropped:
            log.warning("weights: hotkeys without a UID dropped: %s", ", ".join(outcome.dropped))
        log.info(
            "weights submitted for %d uids: %s (%s)",
            len(outcome.uids),
            "ok" if outcome.success else "failed",
            outcome.message,
        )
        return outcome

    async def _append(self, event: WeightsSubmitted, at: datetime, actor: str) -> Envelope:
        return await record_weights(self._log, event, at, actor=actor)
