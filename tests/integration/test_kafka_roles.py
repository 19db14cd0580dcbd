"""`taskledger serve` on Kafka as separate processes: two edges and two processors.

Everything as an operator would run it: real processes from the command line, one local
broker, miners on loopback and a validator posting signed evaluations. The edges publish
commands to ``<prefix>.commands`` and answer from the replies; the processors share the
command partitions, each dispatches the tasks of its own, and the owner of partition 0 also
runs retention and projections. One processor is killed with SIGKILL half-way: the other takes
its partitions (and, if it led, the lead) and every task still ends APPROVED, with a status
stream from an edge that runs no processor at all, and a log that audits clean.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from audit.log_audit import audit_log
from events.kafka import KafkaEventLog
from miners.client import MinerClient
from miners.identity import Identity
from taskledger.dev import free_port
from tests.support.fast_miners import FakeMiner, answer
from tests.support.kafka_broker import KafkaBroker
from tests.support.serve_deployment import API_KEY, VALIDATOR, Deployment, summarization_miners_file

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@asynccontextmanager
async def miners(count: int) -> AsyncIterator[list[FakeMiner]]:
    hotkeys = [Identity.from_seed(bytes([30 + n]) * 32, "miner").ss58 for n in range(count)]
    started = [await FakeMiner(hotkey, answer).start() for hotkey in hotkeys]
    try:
        yield started
    finally:
        for miner in started:
            await miner.stop()


async def submit(session: aiohttp.ClientSession, edges: list[str], n: int) -> str:
    """Submit through one edge; the other knows the task at once (202 means accepted)."""
    async with session.post(
        f"{edges[n % 2]}/api/v1/summarization",
        json={"text": f"task number {n}: a text worth summarising, in a few words"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert response.status == 202, await response.text()
        task_id = str((await response.json())["task_id"])
    await status(session, edges[(n + 1) % 2], task_id)
    return task_id


async def status(session: aiohttp.ClientSession, edge: str, task_id: str) -> dict[str, Any]:
    async with session.get(
        f"{edge}/api/v1/task/{task_id}/status", headers={"Authorization": f"Bearer {API_KEY}"}
    ) as response:
        assert response.status == 200, await response.text()
        document: dict[str, Any] = await response.json()
        return document


async def wait_for(
    session: aiohttp.ClientSession, edge: str, task_id: str, wanted: str, timeout: float
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        document = await status(session, edge, task_id)
        if document["status"] == wanted:
            return document
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"task {task_id} stuck in {document['status']}")
        await asyncio.sleep(0.1)


async def stream(session: aiohttp.ClientSession, edge: str, task_id: str) -> list[dict[str, Any]]:
    """The task's SSE stream until the edge ends it (at a terminal status)."""
    statuses = []
    async with session.get(
        f"{edge}/api/v1/task/{task_id}/stream",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=aiohttp.ClientTimeout(total=120),
    ) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: "):
                statuses.append(json.loads(line[len(b"data: ") :]))
    return statuses


async def test_edges_and_processors_as_separate_processes(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    prefix = f"roles-{uuid.uuid4().hex[:10]}"
    event_log = f"kafka://{kafka.bootstrap}?prefix={prefix}&partitions=4"
    async with miners(3) as fleet:
        miners_file = summarization_miners_file(tmp_path / "miners.json", fleet)
        deployment = Deployment(tmp_path, event_log, miners_file)
        edges = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        try:
            first, _second = (deployment.start("processors") for _ in range(2))
            for edge in edges:
                deployment.start("edge", int(edge.rsplit(":", 1)[1]))
            for edge in edges:
                await deployment.healthy(edge)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{edges[1]}/api/v1/health") as response,
            ):
                assert (await response.json())["hotkey"] == deployment.proxy.ss58
            await run_tasks(deployment, edges, kill=first)
        except BaseException:
            deployment.stop()
            print(deployment.logs())
            raise
        deployment.stop()
    assert first.returncode == -signal.SIGKILL
    for process in deployment.processes[1:]:
        assert process.returncode == 0, deployment.logs()
    reader = KafkaEventLog.from_url(event_log)
    try:
        report = await audit_log(reader)
    finally:
        await reader.close()
    assert report.violations == [], report.violations
    assert report.events == 40 * 8


async def run_tasks(
    deployment: Deployment, edges: list[str], kill: subprocess.Popen[bytes]
) -> None:
    async with aiohttp.ClientSession() as session:
        validator = MinerClient(VALIDATOR, timeout_seconds=10, max_connections=4)
        try:
            first = [await submit(session, edges, n) for n in range(20)]
            # The second edge runs no processor: its stream hears the status topic.
            streaming = asyncio.create_task(stream(session, edges[1], first[0]))
            await wait_for(session, edges[0], first[-1], "DONE", timeout=60)
            kill.send_signal(signal.SIGKILL)
            later = [await submit(session, edges, n) for n in range(20, 40)]
            for task_id in first + later:
                document = await wait_for(session, edges[0], task_id, "DONE", timeout=90)
                scores = {slot["hotkey"]: 0.9 for slot in document["miners"]}
                reply = await validator.post_signed(
                    edges[1],
                    "/api/v1/validator/evaluation",
                    {"task_id": task_id, "scores": scores},
                    receiver_ss58=deployment.proxy.ss58,
                )
                assert reply.status == 200, reply.json
            for task_id in first + later:
                await wait_for(session, edges[1], task_id, "APPROVED", timeout=60)
            statuses = await asyncio.wait_for(streaming, 60)
        finally:
            await validator.close()
    versions = [document["version"] for document in statuses]
    assert versions == sorted(set(versions))
    assert statuses[-1]["status"] == "APPROVED"
    assert statuses[-1]["task_id"] == first[0]
