"""The Kafka pipeline's short cuts keep its guarantees: commands a processor's own process
sends for partitions it owns (decided without the broker's round trips), tasks distributed
in the transaction that creates them, input offsets committed in the heads topic, and heads
written before their events' offsets are known.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from aggregates import Command, CreateTask, DistributeTask, TaskAlreadyExists, TaskState
from events import Envelope
from events.kafka import KafkaEventLog, StreamWriter, TransactionFailed
from events.kafka.partition_state import PartitionState
from processors.command_core import Outcome
from processors.kafka.bus import KafkaCommandBus
from processors.kafka.processor import KafkaCommandProcessor
from processors.kafka.publisher import CommandPublisher
from processors.kafka.status_topic import StatusTopicFeed
from tests.support.histories import T0, chain, lifecycle
from tests.support.kafka_broker import KafkaBroker
from tests.support.kafka_pipeline import read_topic, wait_for_streams

pytestmark = pytest.mark.kafka

PARTITIONS = 3


@pytest.fixture
async def reader(kafka: KafkaBroker) -> AsyncIterator[KafkaEventLog]:
    log = KafkaEventLog(
        kafka.bootstrap, topic_prefix=f"fast-{uuid.uuid4().hex[:10]}", partitions=PARTITIONS
    )
    await log.start()
    try:
        yield log
    finally:
        await log.close()


async def owning_everything(processor: KafkaCommandProcessor) -> None:
    async with asyncio.timeout(60):
        while not processor.leading or len(processor._writers) < PARTITIONS:
            await asyncio.sleep(0.1)


async def test_commands_for_owned_partitions_skip_the_topics(reader: KafkaEventLog) -> None:
    log = KafkaEventLog(reader.bootstrap, topic_prefix=reader.topics.prefix)
    processor = KafkaCommandProcessor(log)
    bus = KafkaCommandBus(log, reply_timeout=30)
    bus.attach(processor)
    running = asyncio.create_task(processor.run())
    try:
        await owning_everything(processor)
        scripts = {f"task-{n}": lifecycle("approved", T0, ("hk-a",)) for n in range(4)}
        outcomes = await asyncio.gather(
            *(bus.execute(t, commands[0], actor="client-1") for t, commands in scripts.items())
        )
        assert [o.state.status for o in outcomes] == ["PENDING"] * 4
        with pytest.raises(TaskAlreadyExists):
            first = scripts["task-0"][0]
            assert isinstance(first, CreateTask)
            await bus.execute("task-0", first, actor="client-1")
        for task_id, commands in scripts.items():
            for command in commands[1:]:
                await bus.execute(task_id, command, actor="client-1")
        lengths = {t: len(await log.read_stream(t)) for t in scripts}
        streams = await wait_for_streams(reader, lengths)
        assert all(streams[t][-1].type == "TaskApproved" for t in scripts)
        assert processor.stats.transactions > 0
    finally:
        processor.stop()
        await asyncio.wait_for(running, 30)
        await bus.close()
        await log.close()
    topics = reader.topics
    assert await read_topic(reader.bootstrap, topics.commands, PARTITIONS) == []
    assert await read_topic(reader.bootstrap, topics.replies, 1) == []


def distribution(commands: list[Command]) -> DistributeTask:
    assert isinstance(commands[1], DistributeTask)
    return commands[1]


class ScriptedDispatcher:
    """Stands in for the dispatcher: distributes the tasks it is given a script for."""

    def __init__(self, distributions: dict[str, DistributeTask]) -> None:
        self.distributions = distributions
        self.told: list[tuple[str, Outcome | None]] = []

    async def distribution_at_creation(self, state: TaskState) -> DistributeTask | None:
        assert state.status == "PENDING" and state.version == 1
        return self.distributions.get(state.task_id)

    def distributed_at_creation(self, command: DistributeTask, outcome: Outcome | None) -> None:
        task_id = next(t for t, c in self.distributions.items() if c is command)
        self.told.append((task_id, outcome))


@pytest.mark.parametrize("first_transaction", ["commits", "fails"])
async def test_a_task_is_distributed_in_the_transaction_that_creates_it(
    reader: KafkaEventLog, monkeypatch: pytest.MonkeyPatch, first_transaction: str
) -> None:
    commit = StreamWriter.commit
    failures: list[str] = []

    async def failing_once(writer: StreamWriter, appends: Any, **kwargs: Any) -> Any:
        distributing = any(e.type == "TaskDistributed" for a in appends for e in a.events)
        if first_transaction == "fails" and distributing and not failures:
            failures.append("failed")
            raise TransactionFailed("before the commit")
        return await commit(writer, appends, **kwargs)

    monkeypatch.setattr(StreamWriter, "commit", failing_once)
    scripts = {f"task-{n}": lifecycle("approved", T0, ("hk-a", "hk-b")) for n in range(4)}
    distributed = {"task-0", "task-2"}
    dispatcher = ScriptedDispatcher(
        {t: distribution(c) for t, c in scripts.items() if t in distributed}
    )
    log = KafkaEventLog(reader.bootstrap, topic_prefix=reader.topics.prefix)
    processor = KafkaCommandProcessor(log)
    processor.distributor = dispatcher
    publisher = CommandPublisher(reader)
    await publisher.start()
    running = asyncio.create_task(processor.run())
    try:
        for task_id, commands in scripts.items():
            await publisher.submit(task_id, commands[0], actor="client-1")
        streams = await wait_for_streams(reader, {t: 2 if t in distributed else 1 for t in scripts})
    finally:
        processor.stop()
        await asyncio.wait_for(running, 30)
        await publisher.stop()
        await log.close()
    for task_id, stream in streams.items():
        if task_id in distributed:
            assert [e.type for e in stream] == ["TaskCreated", "TaskDistributed"]
            assert stream[1].actor == "dispatcher"
        else:
            assert [e.type for e in stream] == ["TaskCreated"]
    # One transaction, so one status document: the task was never published as PENDING.
    statuses: dict[str, list[str]] = {}
    for record in await read_topic(reader.bootstrap, reader.topics.status, PARTITIONS):
        statuses.setdefault(record.key.decode(), []).append(orjson.loads(record.value)["status"])
    assert statuses == {t: ["DISTRIBUTED"] if t in distributed else ["PENDING"] for t in scripts}
    # The dispatcher hears of each distribution once it committed (the work goes out then),
    # and of one that did not (its miners are free again).
    committed = {t: o for t, o in dispatcher.told if o is not None}
    assert set(committed) == distributed
    for task_id, outcome in committed.items():
        assert outcome.state.status == "DISTRIBUTED"
        assert [e.event_id for e in outcome.events] == [streams[task_id][1].event_id]
    lost = [t for t, o in dispatcher.told if o is None]
    assert bool(lost) == bool(failures) == (first_transaction == "fails")
    assert set(lost) <= distributed


async def test_the_input_offset_travels_in_the_heads_topic(reader: KafkaEventLog) -> None:
    topics = reader.topics
    publisher = CommandPublisher(reader)
    await publisher.start()
    task_ids = [f"task-{n}" for n in range(6)]
    try:
        for task_id in task_ids:
            await publisher.submit(task_id, lifecycle("approved", T0, ("hk-a",))[0], actor="c")
        log = KafkaEventLog(reader.bootstrap, topic_prefix=topics.prefix)
        processor = KafkaCommandProcessor(log)
        running = asyncio.create_task(processor.run())
        try:
            await wait_for_streams(reader, dict.fromkeys(task_ids, 1))
        finally:
            processor.stop()
            await asyncio.wait_for(running, 30)
            await log.close()
    finally:
        await publisher.stop()
    later = KafkaEventLog(reader.bootstrap, topic_prefix=topics.prefix)
    try:
        await later._catch_up_heads(range(PARTITIONS))
        ends = {
            p: later.input_offset(TopicPartition(topics.commands, p)) for p in range(PARTITIONS)
        }
        assert sum(offset or 0 for offset in ends.values()) == len(task_ids)
        assert {head.task_id for head in await later.stream_heads()} == set(task_ids)
    finally:
        await later.close()


async def test_a_wrong_guess_of_where_events_land_is_caught(reader: KafkaEventLog) -> None:
    writer_log = KafkaEventLog(reader.bootstrap, topic_prefix=reader.topics.prefix)
    try:
        first = chain("task-1", 2)
        await writer_log.append("task-1", 0, first)
        writer = writer_log._writer
        assert writer is not None
        partition = writer_log.partition_of("task-1")
        assert partition in writer._next_offsets
        writer._next_offsets[partition] += 1  # as if someone else had written there
        second = chain("task-1", 2, after=first[-1])
        await writer_log.append("task-1", 2, second)
    finally:
        await writer_log.close()
    fresh = KafkaEventLog(reader.bootstrap, topic_prefix=reader.topics.prefix)
    try:
        stream = await fresh.read_stream("task-1")
        assert [e.event_id for e in stream] == [e.event_id for e in (*first, *second)]
    finally:
        await fresh.close()


async def reading(feed: StatusTopicFeed, wanted: bool) -> None:
    async with asyncio.timeout(30):
        while feed.reading != wanted:
            await asyncio.sleep(0.01)


async def test_the_status_feed_reads_the_topic_only_while_someone_listens(
    reader: KafkaEventLog,
) -> None:
    feed = StatusTopicFeed(reader)
    await feed.start()
    producer = AIOKafkaProducer(bootstrap_servers=reader.bootstrap)
    await producer.start()

    async def publish(task_id: str, version: int) -> None:
        document = {"task_id": task_id, "status": "PENDING", "version": version}
        await producer.send_and_wait(
            reader.topics.status,
            orjson.dumps(document),
            key=task_id.encode(),
            partition=reader.partition_of(task_id),
        )

    try:
        await publish("task-unheard", 1)  # nobody listens: never read
        await asyncio.sleep(0.3)
        assert not feed.reading
        changes = feed.listen("task-heard")
        await reading(feed, True)
        await publish("task-heard", 2)
        async with asyncio.timeout(30):
            document = await changes.get()
        assert document == {"task_id": "task-heard", "status": "PENDING", "version": 2}
        feed.forget("task-heard", changes)
        await reading(feed, False)
        await publish("task-heard", 3)  # while nobody listens: skipped, not queued up
        again = feed.listen("task-heard")
        await reading(feed, True)
        await publish("task-heard", 4)
        async with asyncio.timeout(30):
            document = await again.get()
        assert document["version"] == 4
    finally:
        await producer.stop()
        await feed.close()


async def test_a_subscriber_hears_of_an_own_commit_only_once_it_can_be_read(
    reader: KafkaEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit is visible to consumers a moment before its writer has recorded it; a
    subscriber in the writing process must not be handed the event inside that moment."""
    log = reader
    record = PartitionState.committed

    def recorded_late(state: PartitionState, heads: Any, appends: Any) -> None:
        asyncio.get_running_loop().call_later(0.5, record, state, heads, appends)

    monkeypatch.setattr(PartitionState, "committed", recorded_late)
    read_when_heard: list[int] = []

    async def hear_first() -> None:
        async for batch in log.subscribe(after=None):
            for envelope in batch.events:
                read_when_heard.append(len(await log.read_stream(envelope.task_id)))
            return

    hearing = asyncio.create_task(hear_first())
    await asyncio.sleep(1.0)  # the subscriber is positioned
    await log.append("task-late", 0, chain("task-late", 1))
    await asyncio.wait_for(hearing, 30)
    assert read_when_heard == [1]


class Follower:
    """What a processor's dispatcher hears: the partitions owned, the events committed."""

    def __init__(self) -> None:
        self.owning: list[list[int]] = []
        self.events: list[Envelope] = []

    def owned(self, partitions: Collection[int]) -> None:
        self.owning.append(sorted(partitions))

    def committed(self, events: Sequence[Envelope]) -> None:
        self.events.extend(events)


async def test_the_processor_tells_its_dispatcher_what_it_owns_and_commits(
    reader: KafkaEventLog,
) -> None:
    log = KafkaEventLog(reader.bootstrap, topic_prefix=reader.topics.prefix)
    follower = Follower()
    processor = KafkaCommandProcessor(log, follower=follower)
    bus = KafkaCommandBus(log, reply_timeout=30)
    bus.attach(processor)
    running = asyncio.create_task(processor.run())
    try:
        await owning_everything(processor)
        assert follower.owning[-1] == list(range(PARTITIONS))
        scripts = {f"task-{n}": lifecycle("approved", T0, ("hk-a",)) for n in range(3)}
        for task_id, commands in scripts.items():
            for command in commands[:2]:
                await bus.execute(task_id, command, actor="client-1")
        committed = {(e.task_id, e.type) for e in follower.events}
        for task_id in scripts:
            stream = await log.read_stream(task_id)
            assert {(e.task_id, e.type) for e in stream} <= committed
    finally:
        processor.stop()
        await asyncio.wait_for(running, 30)
        await bus.close()
        await log.close()
    assert follower.owning[-1] == []  # a stopped processor owns nothing
