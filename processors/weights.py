"""The ``weights`` processor: the proxy sets its miners' weights on chain itself.

Every ``interval`` it takes the weights of ``GET /api/v1/validator/weights``
(the moving average of rewards), submits them through a
:class:`~miners.weights.WeightsSetter` (which respects the subnet's rate
limit) and records each submission and its outcome as a ``WeightsSubmitted``
event in the log's ``ledger-weights`` stream, chained, checkpointed and
audited like the tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from events import EventLog
from events.ledger import WeightsSubmitted, record_weights
from miners.weights import Skipped, WeightsSetter
from processors.evaluation import Evaluations

log = logging.getLogger(__name__)


class WeightsProcessor:
    def __init__(
        self,
        event_log: EventLog,
        evaluations: Evaluations,
        setter: WeightsSetter,
        clock: Callable[[], datetime],
    ) -> None:
        self._log = event_log
        self._evaluations = evaluations
        self._setter = setter
        self._clock = clock

    async def tick(self) -> WeightsSubmitted | Skipped:
        weights = await self._evaluations.weights()
        if not weights:
            return Skipped("no miner has a reward yet")
        outcome = await self._setter.submit(weights)
        if isinstance(outcome, Skipped):
            log.info("weights not submitted: %s", outcome.reason)
            return outcome
        await record_weights(self._log, outcome, self._clock(), actor="weights")
        if outcome.dropped:
            log.warning("weights: hotkeys without a UID dropped: %s", ", ".join(outcome.dropped))
        log.info(
            "weights submitted for %d uids: %s (%s)",
            len(outcome.uids),
            "ok" if outcome.success else "failed",
            outcome.message,
        )
        return outcome
