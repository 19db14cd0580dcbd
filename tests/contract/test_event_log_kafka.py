"""The event log contract against a real Kafka broker, plus what only Kafka needs.

Each test gets its own topics (a fresh prefix), so the session's one broker serves them all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from events import EventLog
from events.kafka import (
    DEFAULT_HEADS_IN_MEMORY,
    KafkaEventLog,
    WriterFenced,
    decode_checkpoint,
    partition_for,
)
from tests.contract.event_log_contract import EventLogContract, events_of, ids, read_all
from tests.support.histories import chain
from tests.support.kafka_broker import KafkaBroker

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def fresh_prefix() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


class TestKafkaEventLog(EventLogContract):
    heads_in_memory = DEFAULT_HEADS_IN_MEMORY

    async def make_log(self, request: pytest.FixtureRequest) -> EventLog:
        broker: KafkaBroker = request.getfixturevalue("kafka")
        return await self._started(broker.bootstrap, fresh_prefix())

    async def reopen(self, log: EventLog) -> EventLog:
        assert isinstance(log, KafkaEventLog)
        await log.close()
        return await self._started(log.bootstrap, log.topics.prefix)

    async def _started(self, bootstrap: str, prefix: str) -> KafkaEventLog:
        log = KafkaEventLog(
            bootstrap,
            topic_prefix=prefix,
            partitions=PARTITIONS,
            heads_in_memory=self.heads_in_memory,
        )
        await log.start()
        return log


class TestKafkaEventLogWithHeadsOnDisk(TestKafkaEventLog):
    """The same contract with one head in memory: every other head is read from disk."""

    heads_in_memory = 1


@pytest.fixture
async def log(kafka: KafkaBroker) -> AsyncIterator[KafkaEventLog]:
    log = KafkaEventLog(kafka.bootstrap, topic_prefix=fresh_prefix(), partitions=PARTITIONS)
    try:
        yield log
    finally:
        await log.close()


async def test_the_checkpoint_names_the_next_offset_of_every_partition(
    log: KafkaEventLog,
) -> None:
    for n in range(6):
        await log.append(f"task-{n}", 0, chain(f"task-{n}", 2))
    batches = await read_all(log)
    final = decode_checkpoint(batches[-1].checkpoint)
    assert sorted(final) == list(range(PARTITIONS))
    counts = {p: 0 for p in range(PARTITIONS)}
    for envelope in events_of(batches):
        counts[partition_for(envelope.task_id, PARTITIONS)] += 1
    # Every append is one transaction: its events plus one commit marker.
    for partition, offset in final.items():
        assert offset >= counts[partition]


async def test_records_are_keyed_by_task_and_carry_body_and_hash(log: KafkaEventLog) -> None:
    written = chain("task-1", 2)
    await log.append("task-1", 0, written)
    consumer = AIOKafkaConsumer(
        log.topics.events,
        bootstrap_servers=log.bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        records: list[Any] = []
        async with asyncio.timeout(15):
            while len(records) < 2:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    assert [r.key for r in records] == [b"task-1", b"task-1"]
    assert [r.value for r in records] == [e.body for e in written]
    assert [dict(r.headers)["hash"] for r in records] == [e.hash.encode() for e in written]
    assert {r.partition for r in records} == {partition_for("task-1", PARTITIONS)}


async def test_a_restarted_writer_fences_the_old_one(log: KafkaEventLog) -> None:
    first = chain("task-1", 1)
    await log.append("task-1", 0, first)
    successor = KafkaEventLog(log.bootstrap, topic_prefix=log.topics.prefix)
    try:
        second = chain("task-1", 1, after=first[0])
        await successor.append("task-1", 1, second)
        # The old writer does not know about the successor's event: only the fence stops it.
        with pytest.raises(WriterFenced):
            await log.append("task-1", 1, chain("task-1", 1, after=first[0], note="zombie "))
        # It stays fenced (it must not take the partitions back), and says so when checked.
        with pytest.raises(WriterFenced):
            await log.append("task-2", 0, chain("task-2", 1))
        with pytest.raises(WriterFenced):
            await log.check()
        third = chain("task-1", 1, after=second[0])
        await successor.append("task-1", 2, third)
        assert ids(await successor.read_stream("task-1")) == ids(first + second + third)
        assert ids(await log.read_stream("task-1")) == ids(first + second + third)
    finally:
        await successor.close()


async def test_a_reader_in_another_process_sees_new_appends(log: KafkaEventLog) -> None:
    reader = KafkaEventLog(log.bootstrap, topic_prefix=log.topics.prefix)
    try:
        assert await reader.read_stream("task-1") == []
        written = chain("task-1", 3)
        await log.append("task-1", 0, written[:2])
        assert ids(await reader.read_stream("task-1")) == ids(written[:2])
        await log.append("task-1", 2, written[2:])
        assert ids(await reader.read_stream("task-1")) == ids(written)
    finally:
        await reader.close()


async def test_topics_are_created_with_their_policies(log: KafkaEventLog) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    await log.check()
    topics = log.topics
    admin = AIOKafkaAdminClient(bootstrap_servers=log.bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        wanted = {"cleanup.policy": None, "retention.ms": None}
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, wanted)
                for name in (topics.events, topics.heads, topics.status, topics.checkpoints)
            ]
        )
    finally:
        await admin.close()
    for name in topics.keyed():
        assert described[name] == PARTITIONS
    configs = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in responses
        for resource in response.resources
    }
    assert configs[topics.events]["cleanup.policy"] == "delete"
    assert configs[topics.events]["retention.ms"] == "-1"
    for name in (topics.heads, topics.status, topics.checkpoints):
        assert configs[name]["cleanup.policy"] == "compact"


@pytest.mark.parametrize("lost", ["before the commit", "after the commit"])
async def test_an_append_whose_commit_went_wrong_lands_exactly_once(
    log: KafkaEventLog, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    """The connection drops around the commit: the writer restarts, looks, and settles."""
    first = chain("task-1", 1)
    await log.append("task-1", 0, first)
    commit = AIOKafkaProducer.commit_transaction
    failures: list[str] = []

    async def flaky(producer: AIOKafkaProducer) -> None:
        if not failures and lost == "before the commit":
            failures.append(lost)
            raise KafkaConnectionError(lost)
        await commit(producer)
        if not failures:
            failures.append(lost)
            raise KafkaConnectionError(lost)

    monkeypatch.setattr(AIOKafkaProducer, "commit_transaction", flaky)
    second = chain("task-1", 2, after=first[0])
    await log.append("task-1", 1, second)
    assert failures == [lost]
    monkeypatch.undo()

    assert ids(await log.read_stream("task-1")) == ids(first + second)
    assert ids(events_of(await read_all(log))) == ids(first + second)
    # The next append builds on it as if nothing had happened.
    third = chain("task-1", 1, after=second[-1])
    await log.append("task-1", 3, third)
    fresh = KafkaEventLog(log.bootstrap, topic_prefix=log.topics.prefix)
    try:
        assert ids(await fresh.read_stream("task-1")) == ids(first + second + third)
    finally:
        await fresh.close()
