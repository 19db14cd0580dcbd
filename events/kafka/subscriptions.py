"""Subscriptions to a Kafka log: every events partition, from a checkpoint, in batches.

Order holds within a partition, hence within a task, not across tasks. A subscriber is
never handed an event of a partition this process writes before ``read_stream`` here finds
it: a commit becomes visible to consumers a moment before its writer has recorded it, and
the subscriber waits for that (at most ``settle_seconds``). Without ``follow`` it stops at
the last stable offsets as they were when called (including this process's own commits,
whose transaction markers may land a moment after the commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from aiokafka import TopicPartition

from events.envelope import Envelope
from events.kafka.checkpoints import decode_checkpoint, encode_checkpoint
from events.kafka.clients import CATCH_UP_WAIT_MS, ClientSettings, stop_quietly
from events.kafka.partition_state import PartitionState
from events.log import Batch

# After handing over a batch, a following subscription lets this long pass before it takes
# the next. The consumer fetches no more while records it fetched wait to be taken, so a
# follower under load fetches at most once per pause, and its batch holds what came
# meanwhile: without the pause, each follower of the whole log (the leader's checkpointer;
# before issue 18 also its dispatcher and projections) fetched once per transaction of the
# command processor, a request its process writes and decodes and the broker answers. An
# event after a quiet spell is still taken at once.
GATHER_SECONDS = 0.02
FOLLOW_IDLE_WAIT_MS = 500


async def subscription(
    settings: ClientSettings,
    state: PartitionState,
    closed: Callable[[], bool],
    *,
    after: str | None,
    follow: bool,
    batch_size: int,
) -> AsyncGenerator[Batch, None]:
    """Every event after the checkpoint ``after``; ``closed`` says the log is closing."""
    start = decode_checkpoint(after)
    topics = state.topics
    tps = [TopicPartition(topics.events, p) for p in range(topics.partitions)]
    # A follower's fetch waits long when there is nothing new (the broker answers as soon
    # as there is): idle, it asks 2 times a second, not 10. A read to the end keeps the
    # short wait (see CATCH_UP_WAIT_MS).
    consumer = (
        settings.consumer("subscriber", fetch_max_wait_ms=FOLLOW_IDLE_WAIT_MS)
        if follow
        else settings.consumer("subscriber")
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        positions: dict[int, int] = {}
        for tp in tps:
            positions[tp.partition] = start.get(tp.partition, 0)
            consumer.seek(tp, positions[tp.partition])
        reading = _Reading(settings, state, closed, consumer, positions, batch_size)
        batches = reading.follow() if follow else reading.to_end(tps)
        async for batch in batches:
            yield batch
    finally:
        await stop_quietly(consumer)


class _Reading:
    """One subscription's consumer and where it is in each partition."""

    def __init__(
        self,
        settings: ClientSettings,
        state: PartitionState,
        closed: Callable[[], bool],
        consumer: Any,
        positions: dict[int, int],
        batch_size: int,
    ) -> None:
        self._settings = settings
        self._state = state
        self._closed = closed
        self._consumer = consumer
        self._positions = positions
        self._batch_size = batch_size

    async def follow(self) -> AsyncIterator[Batch]:
        """Whatever any partition has, as it comes: per-partition order only."""
        consumer, state, positions = self._consumer, self._state, self._positions
        while not self._closed():
            fetched = await consumer.getmany(
                timeout_ms=self._settings.poll_ms, max_records=self._batch_size
            )
            events: list[Envelope] = []
            for tp, records in fetched.items():
                await state.recorded(tp.partition, records[-1].offset)
                events.extend(state.placed.envelope(record) for record in records)
                positions[tp.partition] = records[-1].offset + 1
            if events:
                yield Batch(tuple(events), encode_checkpoint(positions))
                await asyncio.sleep(GATHER_SECONDS)

    async def to_end(self, tps: list[TopicPartition]) -> AsyncIterator[Batch]:
        """Partition after partition up to the end offsets of now: the same order every time.

        A fixed order makes a replay reproducible, and a checkpoint taken anywhere in one
        read resumes exactly where that read was, whatever the batch sizes.
        """
        consumer, state, positions = self._consumer, self._state, self._positions
        ends = await self._settings.timed(lambda: consumer.end_offsets(list(tps)))
        consumer.pause(*tps)
        for tp in tps:
            # This process's own commits count even before their markers are written.
            target = max(ends[tp], state.own_end(tp.partition))
            if positions[tp.partition] >= target:
                continue
            consumer.resume(tp)
            while positions[tp.partition] < target and not self._closed():
                # Short waits: the last fetch may bring a commit marker alone.
                fetched = await consumer.getmany(
                    tp, timeout_ms=CATCH_UP_WAIT_MS, max_records=self._batch_size
                )
                records = [r for r in fetched.get(tp, ()) if r.offset < target]
                positions[tp.partition] = max(
                    positions[tp.partition], min(await consumer.position(tp), target)
                )
                if records:
                    yield Batch(
                        tuple(state.placed.envelope(record) for record in records),
                        encode_checkpoint(positions),
                    )
            consumer.pause(tp)
