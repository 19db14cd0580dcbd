"""Projection workers on Kafka: members of one consumer group, each folding its share.

Any number of processes run a :class:`ProjectionWorker` (``taskledger serve --role
projections``, or one inside each processors process): the group ``<prefix>.projections``
splits the events partitions between them, and moves a member's partitions to the others
when it leaves or dies (a SIGKILLed member after the session timeout, 10 s).

Each partition has its own checkpoint in the read-model store (consumer
``projections.p<N>``, the next offset), written in the same transaction as the rows the
partition's events changed; a worker given a partition reads it from there. The store
decides every write inside its transaction (a task only above its stored version, a
miner count only for an event above its task's stored version), so a worker that lost
a partition and has not noticed yet, writing beside the new owner, changes nothing the
new owner would not: the read models hold each event once, whoever folded it.

Miner statistics are folded across partitions in whatever order the workers commit: the
counters come out the same in any order, the moving averages (latency, reward) do not,
exactly: they weigh the latest events most, and which event is "latest" across two
partitions is a matter of who committed first. A rebuild from the log may therefore
differ from the live read models in those averages, never in a task or a counter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from events import Batch
from events.kafka import KafkaEventLog, decode_checkpoint
from processors.projection_runner import MAX_BATCH, StatusBroadcaster
from projections import CONSUMER, Projector
from projections.store import ReadModelStore

logger = logging.getLogger(__name__)


def partition_consumer(partition: int) -> str:
    """The read-model checkpoint of one events partition."""
    return f"{CONSUMER}.p{partition}"


def group_of(log: KafkaEventLog) -> str:
    return f"{log.topics.prefix}.projections"


class ProjectionWorker:
    def __init__(
        self,
        log: KafkaEventLog,
        store: ReadModelStore,
        broadcaster: StatusBroadcaster,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._log = log
        self._store = store
        self._broadcaster = broadcaster
        self._max_batch = max_batch
        self._projectors: dict[int, Projector] = {}
        self.events = 0  # folded by this worker since it started

    async def run(self) -> None:
        batches = self._log.share(group_of(self._log), self._starts, batch_size=self._max_batch)
        async for batch in batches:
            projector = self._projectors.get(batch.partition)
            if projector is None:
                projector = Projector(self._store, partition_consumer(batch.partition))
                self._projectors[batch.partition] = projector
            changed = await projector.apply(Batch(batch.events, str(batch.next_offset)))
            self.events += len(batch.events)
            self._broadcaster.publish(changed)

    async def _starts(self, partitions: Sequence[int]) -> dict[int, int]:
        """Where each partition's checkpoint says; before there were any, where the single
        projection of the whole log (consumer ``projections``) had got to."""
        whole = await self._store.checkpoint(CONSUMER)
        earlier = decode_checkpoint(whole) if whole and not whole.isdecimal() else {}
        starts: dict[int, int] = {}
        for partition in partitions:
            checkpoint = await self._store.checkpoint(partition_consumer(partition))
            starts[partition] = int(checkpoint) if checkpoint else earlier.get(partition, 0)
        logger.info("projecting events partitions %s from offsets %s", sorted(starts), starts)
        return starts
