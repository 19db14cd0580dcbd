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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from bittensor.intents.weights import SetWeights
from bittensor.result import ExtrinsicResult

from aggregates import InvalidCommand, fold
from audit.log_audit import audit_log
from bench.workload import MINERS, lifecycle
from events import Envelope
from events.kafka import KafkaEventLog
from events.ledger import WEIGHTS_STREAM, WeightsSubmitted, ledger_payload
from miners.directory import StaticMinerDirectory
from processors.anchors import FileAnchors
from processors.checkpointer import Checkpointer
from processors.commands import EmbeddedCommands
from processors.kafka.bus import KafkaCommandBus
from processors.ledger_commands import LedgerThroughCommands, RecordLedgerEvent
from projections import Projector, rebuild
from projections.sqlite_store import SqliteReadModelStore
from taskledger.accountability import audit_against_anchors, load_anchors
from taskledger.anchoring import resume_for
from taskledger.deployments.kafka import log_features
from taskledger.settings import from_environment
from taskledger.system import build_system
from tests.support.anchor_signer import PROXY
from tests.support.chain_client import (
    NETUID,
    VALIDATOR,
    Metagraph,
    Neuron,
    RecordingClient,
    Subnets,
)
from tests.support.kafka_broker import KafkaBroker
from tests.support.rewrites import reseal

pytestmark = pytest.mark.kafka

PARTITIONS = 3


async def write(log: KafkaEventLog, first: int, count: int) -> list[str]:
    commands = EmbeddedCommands(log)
    ids = []
    for index in range(first, first + count):
        flow = lifecycle(index)
        for command in flow.commands:
            await commands.execute(flow.task_id, command, actor="test")
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
        resume=resume_for(log_features(log)),
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
    report = await audit_against_anchors(log, log_features(log), checkpoints, PROXY.ss58)
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

    report = await audit_against_anchors(forged, log_features(forged), checkpoints, PROXY.ss58)
    broken = {finding.partition for finding in report.findings}
    assert {f.kind for f in report.findings} == {"log_rewritten"}
    # The attacked tasks' partitions fail; so may the others, as the rewritten topics put
    # even the untouched events at other offsets than the ones the checkpoints signed.
    assert {forged.partition_of(ids[1]), forged.partition_of(ids[3])} <= broken
    await forged.close()


class ChainThatRemembers(RecordingClient):
    """The stand-in chain, which also notes the block of the validator's last weights."""

    async def execute(self, intent: Any, wallet: Any) -> ExtrinsicResult:
        result = await super().execute(intent, wallet)
        own = self.subnets.metagraph_now.by_hotkey(VALIDATOR.ss58)
        assert own is not None
        own.last_update = self.subnets.metagraph_now.block
        return result


async def test_the_weights_processor_on_kafka_appends_through_the_streams_owner(
    kafka: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TASKLEDGER_SET_WEIGHTS=on with a Kafka log, as build_system wires it: the weights
    processor runs on the leader only, each submission (recorded at bittensor's ``execute``
    boundary) becomes a WeightsSubmitted event appended by the owner of the ledger-weights
    partition — also when sent from a process that owns nothing, through the commands
    topic; the plain and anchored audits stay clean and the tasks' projections untouched."""
    prefix = f"weights-{uuid.uuid4().hex[:10]}"
    url = f"kafka://{kafka.bootstrap}?prefix={prefix}&partitions={PARTITIONS}"
    neurons = [Neuron(uid, hotkey) for uid, hotkey in enumerate(MINERS[:6], start=1)]
    neurons.append(Neuron(99, VALIDATOR.ss58))
    client = ChainThatRemembers(Subnets(Metagraph(neurons), rate_limit=100))
    monkeypatch.setattr("bittensor.Client", lambda endpoint: client)
    monkeypatch.setattr("taskledger.system.miner_directory", lambda *_: StaticMinerDirectory([]))
    settings = from_environment(
        {
            "TASKLEDGER_DATA_DIR": str(tmp_path / "data"),
            "TASKLEDGER_EVENT_LOG": url,
            "TASKLEDGER_SET_WEIGHTS": "on",
            "TASKLEDGER_WEIGHTS_SECONDS": "0.3",
            "TASKLEDGER_CHAIN_ENDPOINT": "ws://chain.invalid:9944",
            "TASKLEDGER_NETUID": str(NETUID),
            "TASKLEDGER_WEIGHTS_VERSION_KEY": "7",
        }
    )
    system = build_system(settings, identity=VALIDATOR)
    assert isinstance(system.commands, KafkaCommandBus)
    other_bus = KafkaCommandBus(KafkaEventLog.from_url(url))  # another process's bus
    await system.start(edge=False)
    try:
        ids = []
        for index in range(4):
            flow = lifecycle(index)
            for command in flow.commands:
                await system.commands.execute(flow.task_id, command, actor="test")
            ids.append(flow.task_id)
        async with asyncio.timeout(60):
            while not await system.log.read_stream(WEIGHTS_STREAM):
                await asyncio.sleep(0.1)
        assert system.leader_runtime is not None
        assert "weights" in system.leader_runtime.failures()
        assert "weights" not in system.runtime.failures()  # the leader's alone
        await system.deployment.resign()  # no more ticks of its own
        # The same event from a process that owns nothing goes through the commands topic.
        failed = WeightsSubmitted(
            netuid=NETUID, version_key=7, uids=[1], weights=[1.0], hotkeys=[MINERS[0]],
            dropped=[], submitted_by=VALIDATOR.ss58, success=False, message="TooFast",
        )  # fmt: skip
        record = LedgerThroughCommands(other_bus).record_weights
        last = await record(failed, datetime.now(UTC), "weights")
        # The log's own transactional writer never started: the partitions' owners appended.
        assert isinstance(system.log, KafkaEventLog) and system.log._writer is None
        # What is not a ledger event of a ledger stream is refused, and nothing is written.
        bogus = RecordLedgerEvent(WeightsSubmitted.TYPE, 1, {"netuid": "x"}, datetime.now(UTC))
        for stream_id in (WEIGHTS_STREAM, ids[0]):
            with pytest.raises(InvalidCommand):
                await other_bus.record_ledger(stream_id, bogus, actor="attacker")
    finally:
        await other_bus.close()
        await other_bus.log.close()
        await system.close()

    reader = KafkaEventLog.from_url(url)
    stream = await reader.read_stream(WEIGHTS_STREAM)
    assert stream[-1] == last and ledger_payload(last) == failed
    # One submission: the next ticks found the subnet's rate limit not yet passed.
    ((intent, wallet),) = client.executed
    (event,) = [ledger_payload(e) for e in stream[:-1]]
    assert isinstance(intent, SetWeights) and wallet is VALIDATOR.signer
    assert isinstance(event, WeightsSubmitted) and event.success
    assert (event.netuid, event.uids, event.version_key) == (NETUID, intent.uids, 7)
    assert event.uids and [MINERS[uid - 1] for uid in event.uids] == event.hotkeys
    assert event.submitted_by == VALIDATOR.ss58 and event.extrinsic_id is not None
    assert [e.sequence for e in stream] == [1, 2] and stream[1].prev_hash == stream[0].hash

    plain = await audit_log(reader)
    assert plain.clean, [str(v) for v in plain.violations]
    anchors = tmp_path / "anchors.jsonl"
    events = sum([len(await reader.read_stream(t)) for t in ids]) + len(stream)
    await checkpoint_all(reader, anchors, events)
    report = await audit_against_anchors(
        reader, log_features(reader), await load_anchors(str(anchors)), PROXY.ss58
    )
    assert report.clean and report.unanchored_events == 0, [str(f) for f in report.findings]

    store = SqliteReadModelStore(tmp_path / "readmodels.db")
    await rebuild(reader, Projector(store))
    tasks = await store.get_tasks([*ids, WEIGHTS_STREAM])
    assert set(tasks) == set(ids)
    for task_id, task in tasks.items():
        assert task == fold(task_id, await reader.read_stream(task_id))
    await store.close()
    await reader.close()
