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
import uuid
from collections.abc import Callable
from datetime import datetime

from events import EventLog, StaleVersion, seal, to_data
from events.codec import GENESIS_HASH
from events.envelope import Envelope
from events.ledger import WEIGHTS_STREAM, WeightsSubmitted
from miners.weights import Skipped, WeightsSetter
from processors.evaluation import Evaluations

log = logging.getLogger(__name__)

ACTOR = "weights"


async def record_weights(
    event_log: EventLog, event: WeightsSubmitted, at: datetime, actor: str = ACTOR
) -> Envelope:
    """Append the event to the weights stream (after whatever is there now)."""
    for _ in range(5):
        stream = await event_log.read_stream(WEIGHTS_STREAM)
        sequence = stream[-1].sequence if stream else 0
        envelope = seal(
            event_id=str(uuid.uuid4()),
            task_id=WEIGHTS_STREAM,
            sequence=sequence + 1,
            type=event.TYPE,
            version=event.VERSION,
            occurred_at=at,
            actor=actor,
            data=to_data(event),
            prev_hash=stream[-1].hash if stream else GENESIS_HASH,
        )
        try:
            await event_log.append(WEIGHTS_STREAM, sequence, [envelope])
        except StaleVersion:
            continue  # someone else recorded a submission meanwhile: follow it
        return envelope
    raise StaleVersion(WEIGHTS_STREAM, sequence, -1)


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
        await record_weights(self._log, outcome, self._clock())
        if outcome.dropped:
            log.warning("weights: hotkeys without a UID dropped: %s", ", ".join(outcome.dropped))
        log.info(
            "weights submitted for %d uids: %s (%s)",
            len(outcome.uids),
            "ok" if outcome.success else "failed",
            outcome.message,
        )
        return outcome
