"""How a Kafka log talks to the brokers: its clients' settings, and its topics' creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from events.kafka.topics import KafkaTopics
from events.log import LogUnavailable

logger = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
# A read to the end of some partitions fetches with short waits: every transaction ends in a
# commit marker, and a fetch that brings only a marker moves the position without returning
# a record, so a long wait would be sat out in full at the end of every partition.
CATCH_UP_WAIT_MS = 5

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """The brokers, and how long to wait for them; ``prefix`` names the clients."""

    bootstrap: str
    prefix: str
    transaction_timeout_ms: int
    request_timeout_ms: int
    poll_ms: int

    @property
    def transaction_seconds(self) -> float:
        """Give up on a transaction well before the coordinator would abort it (which bumps
        the producer epoch and looks exactly like being fenced)."""
        return self.transaction_timeout_ms / 1000 / 2

    def consumer(
        self,
        role: str,
        isolation_level: str = "read_committed",
        fetch_max_wait_ms: int | None = None,
    ) -> Any:
        """An unstarted consumer outside any group, reading from the earliest offsets."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.prefix}-{role}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation_level,
            fetch_max_wait_ms=self.poll_ms if fetch_max_wait_ms is None else fetch_max_wait_ms,
            request_timeout_ms=self.request_timeout_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def consumer_at_end(
        self, role: str, tps: Sequence[TopicPartition], fetch_max_wait_ms: int = 20
    ) -> Any:
        """A started consumer of committed records on ``tps``, positioned at their ends now.

        ``fetch_max_wait_ms``: how long the broker holds a fetch when there is nothing to
        read (it answers as soon as there is): how often an idle follower asks again.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.prefix}-{role}",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            consumer.assign(list(tps))
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # resolved now, not at the first fetch
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def timed(self, request: Callable[[], Awaitable[T]]) -> T:
        """A request to the brokers, or ``LogUnavailable`` if they do not answer in time.

        An answer that says "try again" (a retriable error: a partition whose leader is not
        known yet, as on topics just created or on a broker just restarted) is asked again
        within the same time.
        """
        delay, last = 0.05, None
        try:
            async with asyncio.timeout(self.request_timeout_ms / 1000 * 2):
                while True:
                    try:
                        return await request()
                    except KafkaError as error:
                        if not error.retriable:
                            raise
                        last = error
                        logger.debug("broker asked to retry (%r)", error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        except TimeoutError as error:
            raise LogUnavailable(f"the broker did not answer in time (last: {last!r})") from error


async def stop_quietly(client: Any, seconds: float = 10) -> None:
    """Stop a client if it can be stopped in time; a client that will not is left behind."""
    if client is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), seconds)


async def ensure_topics(admin: Any, topics: KafkaTopics) -> KafkaTopics:
    """Create the topics that are missing; the layout to use is the one the keyed topics have."""
    response = await admin.create_topics(topics.specs())
    for topic, code, *_ in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise KafkaError(f"creating topic {topic}: error code {code}")
    described = await _describe(admin, topics.keyed())
    counts = {topic: len(partitions) for topic, partitions in described.items()}
    if len(set(counts.values())) != 1:
        raise KafkaError(f"the keyed topics must have equal partition counts: {counts}")
    count = next(iter(counts.values()))
    if count == topics.partitions:
        return topics
    # The topics exist already: their layout decides where tasks live.
    logger.info("topics %s have %d partitions; using that", topics.prefix, count)
    return KafkaTopics(topics.prefix, count)


async def _describe(admin: Any, topics: Iterable[str]) -> dict[str, list[int]]:
    wanted = list(topics)
    for _ in range(50):
        found = {
            entry["topic"]: sorted(p["partition"] for p in entry["partitions"])
            for entry in await admin.describe_topics(wanted)
            if entry["error_code"] == 0 and entry["partitions"]
        }
        if len(found) == len(wanted):
            return found
        await asyncio.sleep(0.1)
    raise KafkaError(f"topics not available: {sorted(set(wanted) - set(found))}")
