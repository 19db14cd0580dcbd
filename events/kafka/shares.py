"""A share of the events topic: the partitions a consumer group gives this member.

Members of one group split ``<prefix>.events``'s partitions between them; the group
coordinator moves a member's partitions to the others when it leaves, or when it stops
heartbeating (``session_timeout_ms``: a process killed outright is noticed that late).
Each partition is read from the offset that ``start_of`` gives when it is assigned (the
reader's own checkpoint, kept with what it wrote), never from offsets committed to the
group (none are): where a member resumes is exactly what its store says it has. Reads are
read_committed, so events of aborted transactions are never seen.

Records fetched for a partition just taken away are not handed out; one already handed
out may still be in its reader's hands when the next owner starts on it, so what a
reader writes must be safe to write twice, and at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from events.envelope import Envelope
from events.kafka.clients import ClientSettings, stop_quietly
from events.kafka.partition_state import PartitionState
from events.log import LogUnavailable

# Given the partitions just assigned, the offset to read each from (absent: the first).
StartOf = Callable[[Sequence[int]], Awaitable[dict[int, int]]]

SESSION_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class PartitionBatch:
    """Events of one partition, in offset order; ``next_offset`` is where to resume after."""

    partition: int
    events: tuple[Envelope, ...]
    next_offset: int


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: Any, topic: str, start_of: StartOf) -> None:
        self._consumer = consumer
        self._topic = topic
        self._start_of = start_of
        self.partitions: set[int] = set()
        self.failed: Exception | None = None

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.partitions.difference_update(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        ours = [tp for tp in assigned if tp.topic == self._topic]
        try:
            starts = await self._start_of([tp.partition for tp in ours])
        except Exception as error:
            # aiokafka would log this and go on reading from wherever the group is: the
            # subscription raises it instead, and its reader starts again.
            self.failed = error
            return
        for tp in ours:
            self._consumer.seek(tp, starts.get(tp.partition, 0))
        self.partitions.update(tp.partition for tp in ours)


async def shared_subscription(
    settings: ClientSettings,
    state: PartitionState,
    closed: Callable[[], bool],
    *,
    group: str,
    start_of: StartOf,
    batch_size: int,
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
) -> AsyncGenerator[PartitionBatch, None]:
    """This member's share of the events, as it comes; ``closed`` says the log is closing."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        client_id=f"{settings.prefix}-{group}",
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 5),
        request_timeout_ms=max(settings.request_timeout_ms, session_timeout_ms + 5_000),
        fetch_max_wait_ms=settings.poll_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    assignment = _Assignment(consumer, state.topics.events, start_of)
    consumer.subscribe([state.topics.events], listener=assignment)
    await consumer.start()
    try:
        while not closed():
            fetched = await consumer.getmany(timeout_ms=settings.poll_ms, max_records=batch_size)
            if assignment.failed is not None:
                failure = assignment.failed
                raise LogUnavailable("could not start the partitions assigned") from failure
            for tp, records in fetched.items():
                if tp.partition not in assignment.partitions or not records:
                    continue
                yield PartitionBatch(
                    tp.partition,
                    tuple(state.placed.envelope(record) for record in records),
                    records[-1].offset + 1,
                )
    finally:
        await stop_quietly(consumer)
