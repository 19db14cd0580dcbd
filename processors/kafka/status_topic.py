"""Task status as it reaches ``<prefix>.status``, fanned out to this process's listeners.

On Kafka the command processors publish each changed task's status document in the same
transaction as its events; an HTTP edge follows the topic (from its end as of start) and
hands each document to whoever listens for that task — the SSE streams. Documents of tasks
nobody listens to are skipped without being decoded, and while nobody listens at all the
topic is not read: an edge without streams open does not fetch every status of the system.
The first listener after a quiet spell starts from the topic's end; a change written while
that position is being found reaches the stream through its periodic re-read instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from events.kafka import KafkaEventLog
from processors.status_sink import StatusListeners, StatusSink

logger = logging.getLogger(__name__)


class StatusTopicFeed(StatusListeners):
    def __init__(self, log: KafkaEventLog) -> None:
        super().__init__()
        self.log = log
        self._consumer: Any = None
        self._partitions: list[TopicPartition] = []
        self._wanted = asyncio.Event()
        # Set while the topic is read from a known place: a listener that reads the task's
        # state after this is set misses no later change.
        self.positioned = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def reading(self) -> bool:
        """Whether the topic is being read now (someone listens)."""
        consumer = self._consumer
        return consumer is not None and bool(self._partitions) and not consumer.paused()

    def attach(self, task_id: str, sink: StatusSink) -> None:
        super().attach(task_id, sink)
        self._wanted.set()  # someone listens: read the topic

    async def start(self) -> None:
        await self.log.start()  # first: it learns how many partitions the topics have
        topics = self.log.topics
        tps = [TopicPartition(topics.status, p) for p in range(topics.partitions)]
        consumer = await self.log.follow_from_end("status-feed", tps)
        consumer.pause(*tps)  # until someone listens
        self._consumer = consumer
        self._partitions = tps
        self._task = asyncio.create_task(self._follow(), name="status-feed")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 10)
            self._consumer = None

    async def _follow(self) -> None:
        consumer, tps = self._consumer, self._partitions
        while True:
            if not self._listeners:
                consumer.pause(*tps)
                self.positioned.clear()
                self._wanted.clear()
                await self._wanted.wait()
                continue
            try:
                if consumer.paused():
                    # What was written while nobody listened is of use to no one.
                    await consumer.seek_to_end(*tps)
                    consumer.resume(*tps)
                    self.positioned.set()
                fetched = await consumer.getmany(timeout_ms=200, max_records=2000)
            except KafkaError as error:
                logger.warning("reading %s: %r", self.log.topics.status, error)
                await asyncio.sleep(0.5)
                continue
            for records in fetched.values():
                for record in records:
                    self._deliver(record.key, record.value)

    def _deliver(self, key: bytes | None, value: bytes | None) -> None:
        listeners = self._listeners.get(key.decode()) if key else None
        if not listeners or value is None:
            return
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            logger.error("an undecodable status document for %s", key)
            return
        for queue in listeners:
            queue.put_nowait(document)
