"""The Kafka command path driven from a test: a processor running in this process, a command
publisher, scripted lifecycles submitted round by round, and waits on the streams and topics
they produce."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from aggregates import Command
from events import Envelope
from events.kafka import KafkaEventLog
from processors.kafka.processor import KafkaCommandProcessor
from processors.kafka.publisher import CommandPublisher
from tests.support.histories import ENDINGS, T0, Ledger, lifecycle

HOTKEYS = ("hk-a", "hk-b", "hk-c")


WAIT = 60.0


@dataclass
class Running:
    processor: KafkaCommandProcessor
    task: asyncio.Task[None]

    def check(self) -> None:
        if self.task.done():
            self.task.result()
            raise AssertionError("the processor stopped")


@contextlib.asynccontextmanager
async def running_processor(reader: KafkaEventLog) -> AsyncIterator[Running]:
    log = KafkaEventLog(reader.bootstrap, topic_prefix=reader.topics.prefix)
    processor = KafkaCommandProcessor(log)
    running = Running(processor, asyncio.create_task(processor.run()))
    try:
        yield running
    finally:
        processor.stop()
        try:
            await asyncio.wait_for(running.task, 30)
        finally:
            await log.close()


@contextlib.asynccontextmanager
async def publisher_for(reader: KafkaEventLog) -> AsyncIterator[CommandPublisher]:
    publisher = CommandPublisher(reader)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


def scripted(count: int) -> dict[str, list[Command]]:
    endings = sorted(ENDINGS)
    return {
        f"task-{n}-{endings[n % len(endings)]}": lifecycle(
            endings[n % len(endings)],
            T0 + timedelta(minutes=n),
            HOTKEYS[: 1 + n % 3],
            archive=n % 2 == 1,
        )
        for n in range(count)
    }


def expected_types(scripts: dict[str, list[Command]]) -> dict[str, list[str]]:
    ledger = Ledger()
    for task_id, commands in scripts.items():
        for command in commands:
            ledger.execute(task_id, command)
    return {task_id: [e.type for e in ledger.stream(task_id)] for task_id in scripts}


async def submit_all(
    publisher: CommandPublisher, scripts: dict[str, list[Command]]
) -> dict[str, list[str]]:
    """Round by round, one command of every task at a time; returns the command ids."""
    sent: dict[str, list[str]] = {task_id: [] for task_id in scripts}
    for round_ in range(max(len(commands) for commands in scripts.values())):
        due = [(t, c[round_]) for t, c in scripts.items() if round_ < len(c)]
        command_ids = await asyncio.gather(
            *(publisher.submit(t, command, actor="client-1") for t, command in due)
        )
        for (task_id, _), command_id in zip(due, command_ids, strict=True):
            sent[task_id].append(command_id)
    return sent


async def wait_for_streams(
    reader: KafkaEventLog, lengths: dict[str, int], running: Running | None = None
) -> dict[str, list[Envelope]]:
    streams: dict[str, list[Envelope]] = {}
    async with asyncio.timeout(WAIT):
        while True:
            if running is not None:
                running.check()
            for task_id, length in lengths.items():
                if len(streams.get(task_id, ())) < length:
                    streams[task_id] = await reader.read_stream(task_id)
            if all(len(streams[t]) >= n for t, n in lengths.items()):
                return streams
            await asyncio.sleep(0.2)


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every committed record of ``topic`` up to its end now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(WAIT):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


def assert_each_command_applied_once(
    streams: dict[str, list[Envelope]], sent: dict[str, list[str]]
) -> None:
    """Events carry their command's id: every command's events are one run, in order."""
    for task_id, stream in streams.items():
        runs = [
            e.causation_id
            for n, e in enumerate(stream)
            if n == 0 or e.causation_id != stream[n - 1].causation_id
        ]
        assert len(runs) == len(set(runs)), f"{task_id}: a command applied twice"
        assert [c for c in sent[task_id] if c in runs] == runs
