"""The anchored audit on the real Kafka broker: one log chain per partition.

Checkpoints are signed per partition by the real checkpointer; events appended
after them are reported unanchored; then the attacker, with the broker's
admin rights, deletes the events and heads topics and writes them again with
one task rewritten (hashes and heads recomputed) and another left out. The
plain audit is fooled; the anchored one fails on the partitions it broke.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bench.workload import lifecycle
from events import Envelope
from events.kafka_log import KafkaEventLog
from processors.anchors import FileAnchors
from processors.checkpointer import Checkpointer
from processors.commands import CommandHandler
from projections.audit import audit_log
from taskledger.accountability import audit_against_anchors, load_anchors
from taskledger.anchoring import resume_for
from tests.integration.test_anchored_audit import PROXY
from tests.support.kafka_broker import KafkaBroker
from tests.support.rewrites import reseal

pytestmark = pytest.mark.kafka

PARTITIONS = 3


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker.start(tmp_path_factory.mktemp("kafka-anchors"))
    try:
        yield broker
    finally:
        broker.stop()


async def write(log: KafkaEventLog, first: int, count: int) -> list[str]:
    handler = CommandHandler(log)
    ids = []
    for index in range(first, first + count):
        flow = lifecycle(index)
        for command in flow.commands:
            await handler.execute(flow.task_id, command, actor="test")
        ids.append(flow.task_id)
    return ids


async def checkpoint_all(log: KafkaEventLog, anchors: Path, events: int) -> None:
    """Run the real checkpointer until its checkpoints cover ``events`` events."""
    checkpointer = Checkpointer(
        log,
        log,
        PROXY.signer,
        log_name=log.log_name,
        partition_of=log.partition_of,
        resume=resume_for(log),
        every_events=10_000,
        every_seconds=0.0,  # sign at every batch
        sinks=[FileAnchors(anchors)],
        clock=lambda: datetime.now(UTC),
    )
    running = asyncio.create_task(checkpointer.run())
    try:
        async with asyncio.timeout(60):
            while True:
                latest: dict[int, int] = {}
                for checkpoint in await log.log_checkpoints():
                    latest[checkpoint.partition] = checkpoint.events
                if sum(latest.values()) >= events:
                    return
                await asyncio.sleep(0.1)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_the_attack_on_kafka_fails_the_anchored_audit(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    prefix = f"anchors-{uuid.uuid4().hex[:10]}"
    anchors = tmp_path / "anchors.jsonl"
    log = KafkaEventLog(kafka.bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
    ids = await write(log, 0, 6)
    await checkpoint_all(log, anchors, 48)
    later = await write(log, 6, 2)
    checkpoints = await load_anchors(str(anchors))
    assert {c.partition for c in checkpoints} == {log.partition_of(t) for t in ids}
    report = await audit_against_anchors(log, checkpoints, PROXY.ss58)
    assert report.clean, [str(f) for f in report.findings]
    assert report.unanchored_events == 16
    streams: dict[str, list[Envelope]] = {t: await log.read_stream(t) for t in ids + later}
    await log.close()

    # The attacker rewrites the topics: task 1 left out, task 3 rewritten consistently.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    await admin.delete_topics([f"{prefix}.events", f"{prefix}.heads"])
    async with asyncio.timeout(60):
        while {f"{prefix}.events", f"{prefix}.heads"} & set(await admin.list_topics()):
            await asyncio.sleep(0.2)
    await admin.close()
    forged = KafkaEventLog(kafka.bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
    for task_id, stream in streams.items():
        if task_id == ids[1]:
            continue
        events = reseal(stream) if task_id == ids[3] else stream
        await forged.append(task_id, 0, events)
    plain = await audit_log(forged)
    assert plain.clean, [str(v) for v in plain.violations]  # the task chains are fooled

    report = await audit_against_anchors(forged, checkpoints, PROXY.ss58)
    broken = {finding.partition for finding in report.findings}
    assert {f.kind for f in report.findings} == {"log_rewritten"}
    # The attacked tasks' partitions fail; so may the others, as the rewritten topics put
    # even the untouched events at other offsets than the ones the checkpoints signed.
    assert {forged.partition_of(ids[1]), forged.partition_of(ids[3])} <= broken
    await forged.close()
