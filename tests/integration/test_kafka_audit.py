"""Audit and replay over the Kafka event log: real lifecycles audit clean and rebuild the
read models; records forged into the topic, or deleted from it, are caught by the audit.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from aggregates import fold
from audit.log_audit import audit_log
from events import canonical
from events.codec import decode
from events.kafka import KafkaEventLog, partition_for
from processors.commands import EmbeddedCommands
from projections import Projector
from projections.rebuild import rebuild
from projections.sqlite_store import SqliteReadModelStore
from tests.support.histories import ENDINGS, T0, lifecycle
from tests.support.kafka_broker import KafkaBroker

pytestmark = pytest.mark.kafka

PARTITIONS = 3
HOTKEYS = ("hk-a", "hk-b", "hk-c")


@pytest.fixture
async def log(kafka: KafkaBroker) -> AsyncIterator[KafkaEventLog]:
    log = KafkaEventLog(
        kafka.bootstrap, topic_prefix=f"audit-{uuid.uuid4().hex[:10]}", partitions=PARTITIONS
    )
    try:
        yield log
    finally:
        await log.close()


async def run_lifecycles(log: KafkaEventLog, copies: int = 2) -> dict[str, str]:
    """Every ending, ``copies`` times, concurrently through the embedded commands."""
    commands = EmbeddedCommands(log)
    scripts = {
        f"task-{n}-{ending}": lifecycle(
            ending,
            T0 + timedelta(minutes=n),
            HOTKEYS[: 1 + n % 3],
            archive=n % 2 == 0,
        )
        for n, ending in enumerate(sorted(ENDINGS) * copies)
    }

    async def run(task_id: str) -> None:
        for command in scripts[task_id]:
            await commands.execute(task_id, command, actor="audit-test")

    await asyncio.gather(*(run(task_id) for task_id in scripts))
    return {task_id: ENDINGS[task_id.split("-", 2)[2]] for task_id in scripts}


async def test_lifecycles_through_the_commands_audit_clean_and_replay(
    log: KafkaEventLog, tmp_path: Path
) -> None:
    endings = await run_lifecycles(log)
    report = await audit_log(log, batch_size=7)
    assert report.clean, [str(v) for v in report.violations[:5]]
    assert report.tasks == len(endings)
    lengths = {task_id: len(await log.read_stream(task_id)) for task_id in endings}
    assert report.events == sum(lengths.values())

    # A restarted process (no local state) folds the same states from the topic.
    again = KafkaEventLog(log.bootstrap, topic_prefix=log.topics.prefix)
    try:
        for task_id, status in endings.items():
            assert fold(task_id, await again.read_stream(task_id)).status == status

        # Replay: the read models rebuilt from Kafka agree with the lifecycles.
        store = SqliteReadModelStore(tmp_path / "readmodels.db")
        try:
            applied = await rebuild(again, Projector(store), batch_size=5)
            assert applied == report.events
            states = await store.get_tasks(list(endings))
            assert {task_id: state.status for task_id, state in states.items()} == endings
        finally:
            await store.close()
    finally:
        await again.close()


async def forge(log: KafkaEventLog, partition: int, key: str, body: bytes, hash: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=log.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            log.topics.events,
            value=body,
            key=key.encode(),
            partition=partition,
            headers=[("hash", hash.encode())],
        )
    finally:
        await producer.stop()


async def test_a_forged_record_is_named_by_the_audit(log: KafkaEventLog) -> None:
    endings = await run_lifecycles(log, copies=1)
    victim = next(task_id for task_id, status in endings.items() if status == "APPROVED")
    stream = await log.read_stream(victim)
    original = next(e for e in stream if e.type == "MinerResponded")
    fields = decode(original.body)
    fields["data"]["result"] = {"text": "a better transcript, says the forger"}
    # Kafka cannot edit a record: an attacker with write access can only add one.
    await forge(log, partition_for(victim, PARTITIONS), victim, canonical(fields), original.hash)

    report = await audit_log(log)
    assert not report.clean
    assert {v.task_id for v in report.violations} == {victim}
    kinds = {v.kind for v in report.violations}
    assert {"hash_mismatch", "sequence_gap"} <= kinds


async def test_a_well_hashed_forged_continuation_is_caught(log: KafkaEventLog) -> None:
    endings = await run_lifecycles(log, copies=1)
    victim = next(task_id for task_id, status in endings.items() if status == "CANCELLED")
    last = (await log.read_stream(victim))[-1]
    fields = decode(last.body)
    fields.update(
        id=str(uuid.uuid4()),
        sequence=last.sequence + 1,
        prev_hash=last.hash,
        type="TaskApproved",
        data={"result": {"text": "approved behind the log's back"}},
    )
    body = canonical(fields)
    await forge(
        log, partition_for(victim, PARTITIONS), victim, body, hashlib.sha256(body).hexdigest()
    )

    report = await audit_log(log)
    assert {v.task_id for v in report.violations} == {victim}
    # The chain links and the hash matches: the transition table is what catches it.
    assert "illegal_transition" in {v.kind for v in report.violations}


async def test_records_deleted_from_a_partition_are_caught(log: KafkaEventLog) -> None:
    endings = await run_lifecycles(log, copies=1)
    partition = partition_for(sorted(endings)[0], PARTITIONS)
    in_partition = {t for t in endings if partition_for(t, PARTITIONS) == partition}
    admin = AIOKafkaAdminClient(bootstrap_servers=log.bootstrap)
    await admin.start()
    try:
        # Everything before offset 3 goes: the start of the partition's first streams.
        await admin.delete_records(
            {TopicPartition(log.topics.events, partition): RecordsToDelete(before_offset=3)}
        )
    finally:
        await admin.close()

    report = await audit_log(log)
    named = {v.task_id for v in report.violations}
    assert named and named <= in_partition
    assert "sequence_gap" in {v.kind for v in report.violations}
