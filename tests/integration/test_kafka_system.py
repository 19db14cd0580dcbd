"""The whole taskledger process (HTTP edge, dispatcher, projections) on the Kafka event log.

The processors are written against the port, so they run unchanged; the log is chosen the
way the composition root will choose it for ``TASKLEDGER_EVENT_LOG=kafka://…``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from events import StreamHead
from events.kafka import KafkaEventLog
from taskledger.deployments import Deployment
from taskledger.deployments.kafka import KafkaDeployment
from taskledger.settings import Settings
from tests.support.edge_system import running_edge
from tests.support.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_a_url_names_the_broker_the_prefix_and_the_layout() -> None:
    log = KafkaEventLog.from_url("kafka://10.0.0.1:9092,10.0.0.2:9092?prefix=prod&partitions=12")
    assert log.bootstrap == "10.0.0.1:9092,10.0.0.2:9092"
    assert (log.topics.prefix, log.topics.partitions) == ("prod", 12)
    assert log.transactional_id == "prod.writer"
    with pytest.raises(ValueError):
        KafkaEventLog.from_url("kafka://127.0.0.1:9092?partition=3")
    with pytest.raises(ValueError):
        KafkaEventLog.from_url("sqlite")


async def test_a_task_from_submission_to_approval(
    kafka: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"kafka://{kafka.bootstrap}?prefix=system-{uuid.uuid4().hex[:10]}&partitions=3"
    logs: list[KafkaEventLog] = []

    def open_kafka_deployment(settings: Settings) -> Deployment:
        logs.append(KafkaEventLog.from_url(url))
        return KafkaDeployment(logs[-1])

    monkeypatch.setattr("taskledger.system.open_deployment", open_kafka_deployment)
    async with running_edge(tmp_path, miners=("instant",)) as edge:
        assert isinstance(edge.system.log, KafkaEventLog)
        task_ids = [str((await edge.submit())["task_id"]) for _ in range(5)]
        for task_id in task_ids:
            await edge.wait_for(task_id, "DONE", timeout=30)
            reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.8})
            assert reply.status == 200, reply.json
        for task_id in task_ids:
            document = await edge.wait_for(task_id, "APPROVED", timeout=30)
            assert document["result"] is not None
        # An outside service sees the same through the status topic, which the command
        # processor fills in the transactions that append the events.
        lines = await follow_status(edge.system.log, task_ids)
        # running_edge audits the log on the way out.
    assert len(logs) == 1
    heads = await _heads(url)
    assert {head.task_id for head in heads} == set(task_ids)
    last = {line["task_id"]: line for line in lines}
    assert {task_id: line["status"] for task_id, line in last.items()} == dict.fromkeys(
        task_ids, "APPROVED"
    )
    assert {line["version"] for line in last.values()} == {head.sequence for head in heads}


async def follow_status(log: KafkaEventLog, task_ids: list[str]) -> list[dict[str, Any]]:
    """docs/status_subscriber.py, run as the outside process it is meant to be."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "docs" / "status_subscriber.py"),
        "--bootstrap",
        log.bootstrap,
        "--prefix",
        log.topics.prefix,
        *[arg for task_id in task_ids for arg in ("--task", task_id)],
        "--timeout",
        "30",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 45)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def _heads(url: str) -> list[StreamHead]:
    log = KafkaEventLog.from_url(url)
    try:
        return list(await log.stream_heads())
    finally:
        await log.close()
