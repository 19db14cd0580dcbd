"""The real Kafka broker from tests/support does what the Kafka event log needs (aiokafka).

Topics with several partitions, idempotent and transactional producers, consume-transform-
produce with the input offsets committed in the same transaction, read_committed consumers,
compacted topics, and a broker that survives kill() + restart() with its data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from tests.support.kafka_broker import KafkaBroker

pytestmark = pytest.mark.kafka

TIMEOUT = 20.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    workdir: Path = tmp_path_factory.mktemp("kafka-broker")
    kafka = KafkaBroker.start(workdir)
    try:
        yield kafka
    finally:
        kafka.stop()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def create_topic(
    bootstrap: str, name: str, partitions: int = 1, configs: dict[str, str] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=configs)]
        )
        errors = [(topic, code) for topic, code, *_ in response.topic_errors if code != 0]
        assert not errors, errors
    finally:
        await admin.close()


async def consume(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    isolation_level: str = "read_uncommitted",
    until: bytes | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read from the beginning until ``count`` records (or a record with value ``until``)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(records) < count and not any(r.value == until for r in records):
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_admin_creates_topic_with_three_partitions(broker: KafkaBroker) -> None:
    topic = unique("tl-three")
    await create_topic(broker.bootstrap, topic, partitions=3)

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        assert described["error_code"] == 0
        assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]
        assert topic in await admin.list_topics()
    finally:
        await admin.close()


async def test_idempotent_producer_keeps_per_key_order(broker: KafkaBroker) -> None:
    topic = unique("tl-idempotent")
    await create_topic(broker.bootstrap, topic, partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        sent = [
            producer.send(topic, key=f"task-{i % 4}".encode(), value=f"{i}".encode())
            for i in range(200)
        ]
        metadata = await asyncio.gather(*(await asyncio.gather(*sent)))
    finally:
        await producer.stop()
    # Same key -> same partition, strictly increasing offsets in send order.
    by_key: dict[bytes, list[tuple[int, int]]] = {}
    for i, meta in enumerate(metadata):
        by_key.setdefault(f"task-{i % 4}".encode(), []).append((meta.partition, meta.offset))
    for placements in by_key.values():
        assert len({partition for partition, _ in placements}) == 1
        offsets = [offset for _, offset in placements]
        assert offsets == sorted(offsets)

    records = await consume(broker.bootstrap, topic, 200)
    assert len(records) == 200
    assert sorted(int(r.value) for r in records if r.value is not None) == list(range(200))


async def test_transaction_commits_output_and_input_offsets_atomically(
    broker: KafkaBroker,
) -> None:
    source, sink, group = unique("tl-commands"), unique("tl-events"), unique("tl-processor")
    await create_topic(broker.bootstrap, source, partitions=1)
    await create_topic(broker.bootstrap, sink, partitions=1)

    feeder = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
    await feeder.start()
    try:
        for i in range(5):
            await feeder.send_and_wait(source, key=b"task-1", value=f"cmd-{i}".encode())
    finally:
        await feeder.stop()

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, transactional_id=unique("tl-txn")
    )
    await consumer.start()
    await producer.start()
    try:
        commands: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(TIMEOUT):
            while len(commands) < 5:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    commands.extend(batch)
        tp = TopicPartition(source, 0)

        # Committed: the events for the first three commands plus the input offset.
        async with producer.transaction():
            for command in commands[:3]:
                assert command.value is not None
                await producer.send(sink, key=b"task-1", value=b"event-for-" + command.value)
            await producer.send_offsets_to_transaction({tp: commands[2].offset + 1}, group)

        # Aborted: its events must never reach read_committed readers, its offset not stick.
        await producer.begin_transaction()
        await producer.send(sink, key=b"task-1", value=b"aborted-1")
        await producer.send(sink, key=b"task-1", value=b"aborted-2")
        await producer.send_offsets_to_transaction({tp: commands[4].offset + 1}, group)
        await producer.abort_transaction()

        async with producer.transaction():
            await producer.send(sink, key=b"task-1", value=b"sentinel")
    finally:
        await producer.stop()
        await consumer.stop()

    committed = await consume(
        broker.bootstrap, sink, 100, isolation_level="read_committed", until=b"sentinel"
    )
    assert [r.value for r in committed] == [
        b"event-for-cmd-0",
        b"event-for-cmd-1",
        b"event-for-cmd-2",
        b"sentinel",
    ]
    # The aborted records are in the log; only read_uncommitted readers see them.
    everything = await consume(broker.bootstrap, sink, 100, until=b"sentinel")
    assert b"aborted-1" in [r.value for r in everything]

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert offsets[TopicPartition(source, 0)].offset == commands[2].offset + 1


async def test_compacted_topic(broker: KafkaBroker) -> None:
    topic = unique("tl-status")
    await create_topic(broker.bootstrap, topic, configs={"cleanup.policy": "compact"})

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})]
        )
    finally:
        await admin.close()
    (resource,) = response.resources
    configs = {entry[0]: entry[1] for entry in resource[4]}
    assert configs["cleanup.policy"] == "compact"

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"task-1", value=b"PENDING")
        await producer.send_and_wait(topic, key=b"task-1", value=b"DISTRIBUTED")
        # A compacted topic refuses records without a key.
        with pytest.raises(KafkaError):
            await producer.send_and_wait(topic, key=None, value=b"no key")
    finally:
        await producer.stop()


async def test_kill_and_restart_keeps_committed_data(broker: KafkaBroker) -> None:
    topic = unique("tl-durable")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, key=b"k", value=f"{i}".encode())
    finally:
        await producer.stop()
    port = broker.port

    await asyncio.to_thread(broker.kill)
    assert not broker.running
    await asyncio.to_thread(broker.restart)
    assert broker.running
    assert broker.port == port

    records = await consume(broker.bootstrap, topic, 10)
    assert [r.value for r in records] == [f"{i}".encode() for i in range(10)]
