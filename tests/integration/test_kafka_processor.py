"""The command path on Kafka: commands topic → processor (decide + append + status + input
offset in one transaction) → events, status topic, dead letters; and the status subscriber
example in docs/ following it from outside.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from aggregates import CancelTask, CreateTask, RecordResponse, fold
from audit.log_audit import audit_log
from events import canonical
from events.kafka import KafkaEventLog, StreamWriter, TransactionFailed, partition_for
from processors.command_core import CommandRequest
from processors.kafka.messages import encode_command
from projections.status_document import status_document
from tests.support.histories import ENDINGS, T0, lifecycle
from tests.support.kafka_broker import KafkaBroker
from tests.support.kafka_pipeline import (
    HOTKEYS,
    WAIT,
    assert_each_command_applied_once,
    expected_types,
    publisher_for,
    read_topic,
    running_processor,
    scripted,
    submit_all,
    wait_for_streams,
)

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3


@pytest.fixture
async def reader(kafka: KafkaBroker) -> AsyncIterator[KafkaEventLog]:
    """A log opened by the test itself: a reader, never the writer."""
    log = KafkaEventLog(
        kafka.bootstrap, topic_prefix=f"proc-{uuid.uuid4().hex[:10]}", partitions=PARTITIONS
    )
    await log.start()
    try:
        yield log
    finally:
        await log.close()


async def test_lifecycles_through_the_command_topic(reader: KafkaEventLog) -> None:
    scripts = scripted(18)
    expected = expected_types(scripts)
    async with running_processor(reader) as running, publisher_for(reader) as publisher:
        sent = await submit_all(publisher, scripts)
        streams = await wait_for_streams(
            reader, {t: len(types) for t, types in expected.items()}, running
        )
        stats = running.processor.stats
    assert {t: [e.type for e in s] for t, s in streams.items()} == expected
    assert_each_command_applied_once(streams, sent)
    for task_id, stream in streams.items():
        assert fold(task_id, stream).status == ENDINGS[task_id.split("-", 2)[2]]
    report = await audit_log(reader)
    assert report.clean, [str(v) for v in report.violations[:5]]
    assert report.events == sum(len(types) for types in expected.values())
    assert stats.rejected == 0 and stats.dead_lettered == 0
    assert stats.commands == sum(len(c) for c in scripts.values())

    # The status topic ends with each task's current document, published with its events.
    records = await read_topic(reader.bootstrap, reader.topics.status, PARTITIONS)
    last: dict[str, Any] = {}
    for record in records:
        document = json.loads(record.value)
        assert record.key.decode() == document["task_id"]
        assert record.partition == partition_for(document["task_id"], PARTITIONS)
        last[document["task_id"]] = document
    for task_id, stream in streams.items():
        assert last[task_id] == json.loads(canonical(status_document(fold(task_id, stream))))


async def test_undecodable_commands_go_to_the_dead_letter_topic(reader: KafkaEventLog) -> None:
    task_id = "task-poisoned"
    partition = partition_for(task_id, PARTITIONS)
    other = next(
        f"task-{n}" for n in range(100) if partition_for(f"task-{n}", PARTITIONS) != partition
    )
    create = lifecycle("cancelled_pending", T0, HOTKEYS[:1])[0]
    misrouted = encode_command(
        CommandRequest(other, create, "client-1", command_id="cmd-misrouted")
    )
    unknown = json.dumps(
        {"id": "x", "task_id": task_id, "actor": "a", "type": "Explode", "command": {}}
    ).encode()
    naive = json.loads(
        encode_command(CommandRequest(task_id, create, "client-1", command_id="cmd-naive"))
    )
    naive["command"]["now"] = "2025-01-01T00:00:00"
    poison = [b"\x00 not json", unknown, misrouted, json.dumps(naive).encode()]

    raw = AIOKafkaProducer(bootstrap_servers=reader.bootstrap, acks="all")
    await raw.start()
    try:
        for value in poison:
            await raw.send_and_wait(
                reader.topics.commands, value=value, key=task_id.encode(), partition=partition
            )
    finally:
        await raw.stop()
    async with running_processor(reader) as running, publisher_for(reader) as publisher:
        # The partition keeps flowing behind the poison.
        await publisher.submit(task_id, create, actor="client-1")
        await publisher.submit(task_id, CancelTask("changed my mind", T0), actor="client-1")
        stream = (await wait_for_streams(reader, {task_id: 2}, running))[task_id]
        stats = running.processor.stats
    assert [e.type for e in stream] == ["TaskCreated", "TaskCancelled"]
    assert stats.dead_lettered == len(poison)

    letters = await read_topic(reader.bootstrap, reader.topics.deadletter, 1)
    assert [r.value for r in letters] == poison
    for record in letters:
        headers = dict(record.headers)
        assert headers["error"]
        assert headers["source"].decode().startswith(f"{reader.topics.commands}:{partition}:")


async def test_refused_commands_are_consumed_without_events(reader: KafkaEventLog) -> None:
    task_id = "task-refused"
    create = lifecycle("cancelled_pending", T0, HOTKEYS[:1])[0]
    assert isinstance(create, CreateTask)
    async with running_processor(reader) as running, publisher_for(reader) as publisher:
        await publisher.submit(task_id, RecordResponse("hk-a", {}, 1.0, T0), actor="hk-a")
        await publisher.submit(task_id, create, actor="client-1")
        await publisher.submit(task_id, create, actor="client-1")  # already exists
        await publisher.submit(task_id, CancelTask("done", T0), actor="client-1")
        stream = (await wait_for_streams(reader, {task_id: 2}, running))[task_id]
        async with asyncio.timeout(WAIT):
            while running.processor.stats.commands < 4:
                await asyncio.sleep(0.1)
        stats = running.processor.stats
    assert [e.type for e in stream] == ["TaskCreated", "TaskCancelled"]
    assert stats.rejected == 2
    assert stats.dead_lettered == 0


async def test_the_status_subscriber_example_follows_tasks_to_the_end(
    reader: KafkaEventLog,
) -> None:
    scripts = scripted(4)
    subscriber = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "docs" / "status_subscriber.py"),
        "--bootstrap",
        reader.bootstrap,
        "--prefix",
        reader.topics.prefix,
        *[arg for task_id in scripts for arg in ("--task", task_id)],
        "--timeout",
        str(WAIT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    async with running_processor(reader), publisher_for(reader) as publisher:
        await submit_all(publisher, scripts)
        out, err = await asyncio.wait_for(subscriber.communicate(), WAIT + 10)
    assert subscriber.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_task.setdefault(line["task_id"], []).append(line)
    assert set(by_task) == set(scripts)
    for task_id, updates in by_task.items():
        versions = [u["version"] for u in updates]
        assert versions == sorted(set(versions))
        ending = ENDINGS[task_id.split("-", 2)[2]]
        # Archiving may follow the terminal status; the subscriber stops at the first.
        assert updates[-1]["status"] == ending


@pytest.mark.parametrize("lost", ["before the commit", "after the commit"])
async def test_a_failed_transaction_is_recovered_without_loss_or_repeat(
    reader: KafkaEventLog, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    """The processor cannot tell whether its transaction committed: it restarts its writer
    and rewinds to the committed input offset, which says exactly what to do again."""
    commit = StreamWriter.commit
    failures: list[str] = []

    async def flaky(writer: StreamWriter, *args: Any, **kwargs: Any) -> Any:
        if not failures and lost == "after the commit":
            await commit(writer, *args, **kwargs)
        if not failures:
            failures.append(lost)
            raise TransactionFailed(lost)
        return await commit(writer, *args, **kwargs)

    monkeypatch.setattr(StreamWriter, "commit", flaky)
    scripts = scripted(9)
    expected = expected_types(scripts)
    async with running_processor(reader) as running, publisher_for(reader) as publisher:
        sent = await submit_all(publisher, scripts)
        streams = await wait_for_streams(
            reader, {t: len(types) for t, types in expected.items()}, running
        )
        recoveries = running.processor.stats.recoveries
    assert failures == [lost] and recoveries == 1
    assert {t: [e.type for e in s] for t, s in streams.items()} == expected
    assert_each_command_applied_once(streams, sent)
    report = await audit_log(reader)
    assert report.clean, [str(v) for v in report.violations[:5]]
    assert report.events == sum(len(types) for types in expected.values())
