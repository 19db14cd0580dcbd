"""What a process knows of a Kafka log's partitions: the state its log and writers share.

The log reads heads and input positions from the heads topic; its writers claim
partitions, commit transactions and record what they wrote; readers and subscribers ask
whether a partition is written here and how far its heads reach. All of that is this one
object, so none of them reaches into another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from events.codec import decode
from events.envelope import Envelope
from events.kafka.heads import Head, HeadsTable
from events.kafka.recent import PlacedEvents, StreamCache
from events.kafka.topics import INPUT_PREFIX, KafkaTopics, input_name, partition_for

if TYPE_CHECKING:
    from events.kafka.writer import PendingAppend, StreamWriter

# Seconds' worth: the subscribers in this process are moments behind its commits.
_PLACED_EVENTS = 8192


class PartitionState:
    """The partitions' layout, who writes them here, and their heads as far as known.

    ``topics`` is the layout in use: the log replaces it when the topics turn out to exist
    already with another partition count.
    """

    def __init__(
        self,
        topics: KafkaTopics,
        *,
        heads_in_memory: int,
        stream_cache_size: int,
        settle_seconds: float,
    ) -> None:
        self.topics = topics
        self.heads = HeadsTable(heads_in_memory)
        self.streams = StreamCache(stream_cache_size)
        self.placed = PlacedEvents(_PLACED_EVENTS)
        self._settle_seconds = settle_seconds
        self._inputs: dict[str, int] = {}  # "<topic>:<partition>" -> committed position
        self._owners: dict[int, StreamWriter] = {}
        self._own_end: dict[int, int] = {}
        # Per events partition, the offset after the last event the known heads cover.
        self._heads_end: dict[int, int] = {}

    def partition_of(self, task_id: str) -> int:
        return partition_for(task_id, self.topics.partitions)

    # -- ownership --------------------------------------------------------------------------

    def claim(self, partitions: Iterable[int], writer: StreamWriter) -> None:
        for partition in partitions:
            self._owners[partition] = writer

    def release(self, partitions: Iterable[int], writer: StreamWriter) -> None:
        for partition in partitions:
            if self._owners.get(partition) is writer:
                del self._owners[partition]

    def owns(self, partition: int) -> bool:
        """Whether a writer of this process owns the partition (its heads are current)."""
        return partition in self._owners

    def writers(self) -> list[StreamWriter]:
        """The writers owning partitions now, each once."""
        return list({id(writer): writer for writer in self._owners.values()}.values())

    def own_end(self, partition: int) -> int:
        """The offset after this process's last committed event in an events partition."""
        return self._own_end.get(partition, 0)

    # -- heads and input positions --------------------------------------------------------

    def apply_heads_record(self, key: bytes, value: bytes | None) -> None:
        """A record of the heads topic, read in offset order: a head or an input position."""
        if key.startswith(INPUT_PREFIX):
            if value is not None:
                self._inputs[key[len(INPUT_PREFIX) :].decode()] = int(decode(value)["offset"])
        elif value is not None:
            self.set_head(key.decode(), Head.decode(value))

    def set_head(self, task_id: str, head: Head) -> None:
        # Applied in offset order, but a writer's own commit may be known before the topic
        # shows it: never step a head back.
        current = self.heads.get(task_id)
        if current is None or head.sequence >= current.sequence:
            self.heads.put(task_id, head)
        partition = self.partition_of(task_id)
        if head.last_offset >= self._heads_end.get(partition, 0):
            self._heads_end[partition] = head.last_offset + 1

    def committed(self, heads: Mapping[str, Head], appends: Sequence[PendingAppend]) -> None:
        """A writer of this process committed these heads, for these appends."""
        for task_id, head in heads.items():
            self.set_head(task_id, head)
            partition = self.partition_of(task_id)
            self._own_end[partition] = max(self._own_end.get(partition, 0), head.last_offset + 1)
        for item in appends:
            self.streams.extend(item.task_id, item.events)

    def record_input(self, tp: TopicPartition, offset: int) -> None:
        self._inputs[input_name(tp)] = offset

    def input_offset(self, tp: TopicPartition) -> int | None:
        return self._inputs.get(input_name(tp))

    async def recorded(self, partition: int, offset: int) -> None:
        """Until the heads cover ``offset`` of a partition this process writes.

        Such an event is visible only once its transaction committed, and a committed
        transaction of this process's writer is recorded (``committed``) as soon as the
        writer's coroutine runs on: a few turns of the loop. Events of partitions written
        elsewhere are read with their heads (``read_stream``), so they need no wait.
        """
        deadline = time.monotonic() + self._settle_seconds
        while (
            partition in self._owners
            and self._heads_end.get(partition, 0) <= offset
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.001)

    def stream_has(self, task_id: str, envelope: Envelope) -> bool:
        """Whether the cached stream holds this very event (read it first)."""
        head = self.heads.get(task_id)
        stream = self.streams.get(task_id, head.sequence) if head else None
        if stream is None or len(stream) < envelope.sequence:
            return False
        return stream[envelope.sequence - 1].hash == envelope.hash

    def close(self) -> None:
        self.heads.close()
