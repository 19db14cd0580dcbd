"""Every processor dispatches the tasks of the partitions it owns (processors/kafka/owned.py),
as an operator runs it: two `taskledger serve --role processors` and one edge on one broker,
miners that answer at once.

Under load both processes distribute tasks (each says how many in its log, and a process
distributes only tasks of the partitions it owns). Then one of them is SIGKILLed mid-load —
the leader, or the other — and afterwards every task has completed, none was distributed
twice, no command was applied twice, the log audits clean, and retention, a singleton of the
leader, archives approved tasks on whichever process leads after the kill.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from audit.log_audit import audit_log
from events import Envelope
from events.kafka import KafkaEventLog
from miners.client import MinerClient
from miners.identity import Identity
from taskledger.dev import free_port
from tests.support.fast_miners import FakeMiner, slow
from tests.support.kafka_broker import KafkaBroker
from tests.support.serve_deployment import API_KEY, VALIDATOR, Deployment, summarization_miners_file

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Submitted before the kill at least (enough for both processes to have distributed some),
# and after it.
BEFORE_KILL = 24
AFTER_KILL = 24
# Four at a time, as clients do.
CONCURRENCY = 4
WAIT = 60.0
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@asynccontextmanager
async def miners(count: int) -> AsyncIterator[list[FakeMiner]]:
    hotkeys = [Identity.from_seed(bytes([60 + n]) * 32, "miner").ss58 for n in range(count)]
    # Half a second per answer: the victim dies with work at the miners, whose answers it
    # will never record; the partition's next owner must send that work again.
    started = [await FakeMiner(hotkey, slow(0.5)).start() for hotkey in hotkeys]
    try:
        yield started
    finally:
        for miner in started:
            await miner.stop()


def log_of(deployment: Deployment, process: subprocess.Popen[bytes]) -> str:
    index = deployment.processes.index(process)
    return (deployment.root / f"processors-{index}.err").read_text(errors="replace")


def owned_partitions(text: str) -> list[int]:
    """The partitions the process dispatches for now, by its last word on it."""
    said = re.findall(r"dispatching the tasks of partitions \[([\d, ]*)\]", text)
    return [int(p) for p in said[-1].split(",") if p.strip()] if said else []


def distributed_here(text: str) -> int:
    said = re.findall(r"distributed (\d+) tasks here so far", text)
    return int(said[-1]) if said else 0


def leading(text: str) -> bool:
    said = re.findall(r"leading: (True|False)", text)
    return bool(said) and said[-1] == "True"


async def until(check: Callable[[], bool], seconds: float = WAIT) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.2)


async def submit(session: aiohttp.ClientSession, edge: str, n: int) -> str:
    async with session.post(
        f"{edge}/api/v1/summarization",
        json={"text": f"task number {n}: a text worth summarising, in a few words"},
        headers=AUTH,
    ) as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["task_id"])


async def task_status(session: aiohttp.ClientSession, edge: str, task_id: str) -> str:
    async with session.get(f"{edge}/api/v1/task/{task_id}/status", headers=AUTH) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["status"])


async def all_in(
    session: aiohttp.ClientSession,
    edge: str,
    task_ids: list[str],
    wanted: str,
    story: Callable[[str], Awaitable[str]],
) -> None:
    waiting = list(task_ids)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while waiting:
        status = await task_status(session, edge, waiting[0])
        if status == wanted:
            waiting.pop(0)
        elif loop.time() > deadline:
            raise AssertionError(f"task {waiting[0]} stuck in {status}: {await story(waiting[0])}")
        else:
            await asyncio.sleep(0.2)


def assert_lifecycle_once(task_id: str, stream: list[Envelope]) -> None:
    types = [e.type for e in stream]
    assert "TaskCompleted" in types, f"{task_id} never completed: {types}"
    assert types.count("TaskDistributed") == 1, f"{task_id} distributed twice: {types}"
    runs = [
        e.causation_id
        for n, e in enumerate(stream)
        if n == 0 or e.causation_id != stream[n - 1].causation_id
    ]
    assert len(runs) == len(set(runs)), f"{task_id}: a command applied twice: {types}"


@pytest.mark.parametrize("victim", ["leader", "follower"])
async def test_both_processors_dispatch_and_a_kill_loses_and_doubles_nothing(
    kafka: KafkaBroker, tmp_path: Path, victim: str
) -> None:
    prefix = f"owners-{uuid.uuid4().hex[:10]}"
    event_log = f"kafka://{kafka.bootstrap}?prefix={prefix}&partitions=4"
    async with miners(3) as fleet:
        miners_file = summarization_miners_file(tmp_path / "miners.json", fleet)
        deployment = Deployment(tmp_path, event_log, miners_file)
        # The miner timeout (30 s) outlasts the group's session (6 s): the work the victim
        # sent just before dying is sent again by the partition's next owner before its
        # miners time out, or the task FAILs (each task has all three miners, so none is
        # left to fail over to).
        deployment.env["TASKLEDGER_RETENTION_SECONDS"] = "2"
        edge = f"http://127.0.0.1:{free_port()}"
        try:
            processors = [deployment.start("processors") for _ in range(2)]
            deployment.start("edge", int(edge.rsplit(":", 1)[1]))
            await deployment.healthy(edge)
            # Both own partitions (the second's joining moved some from the first).
            await until(
                lambda: (
                    sorted(p for q in processors for p in owned_partitions(log_of(deployment, q)))
                    == [0, 1, 2, 3]
                    and all(owned_partitions(log_of(deployment, p)) for p in processors)
                )
            )
            task_ids = await run_load(deployment, processors, edge, victim)
        except BaseException:
            deployment.stop()
            print(deployment.logs())
            raise
        deployment.stop()
    reader = KafkaEventLog.from_url(event_log)
    try:
        for task_id in task_ids:
            assert_lifecycle_once(task_id, await reader.read_stream(task_id))
        report = await audit_log(reader)
    finally:
        await reader.close()
    assert report.violations == [], report.violations


async def run_load(
    deployment: Deployment,
    processors: list[subprocess.Popen[bytes]],
    edge: str,
    victim: str,
) -> list[str]:
    killed = next(p for p in processors if leading(log_of(deployment, p)) == (victim == "leader"))
    survivor = next(p for p in processors if p is not killed)
    async with aiohttp.ClientSession() as session:
        submitted: list[str] = []
        kill: list[int] = []  # how many were submitted when the kill came

        async def load() -> None:
            while not kill or len(submitted) < kill[0] + AFTER_KILL:
                n = len(submitted)
                batch = range(n, n + CONCURRENCY)
                submitted.extend(await asyncio.gather(*(submit(session, edge, k) for k in batch)))

        loading = asyncio.create_task(load())
        try:
            # Both distribute under load, before the kill.
            await until(
                lambda: (
                    len(submitted) >= BEFORE_KILL
                    and all(distributed_here(log_of(deployment, p)) > 0 for p in processors)
                )
            )
            killed.send_signal(signal.SIGKILL)
            kill.append(len(submitted))
            await asyncio.wait_for(loading, WAIT)
        finally:
            loading.cancel()
        await all_in(session, edge, submitted, "DONE", lambda t: story(deployment, t))
        # The survivor leads now, and its retention archives what is approved.
        await until(lambda: leading(log_of(deployment, survivor)))
        approved = submitted[-3:]
        validator = MinerClient(VALIDATOR, timeout_seconds=10, max_connections=4)
        try:
            for task_id in approved:
                async with session.get(
                    f"{edge}/api/v1/task/{task_id}/status", headers=AUTH
                ) as response:
                    document = await response.json()
                scores = {slot["hotkey"]: 0.9 for slot in document["miners"]}
                reply = await validator.post_signed(
                    edge,
                    "/api/v1/validator/evaluation",
                    {"task_id": task_id, "scores": scores},
                    receiver_ss58=deployment.proxy.ss58,
                )
                assert reply.status == 200, reply.json
        finally:
            await validator.close()
        await archived(deployment, approved)
    assert killed.wait(10) == -signal.SIGKILL
    return submitted


async def story(deployment: Deployment, task_id: str) -> str:
    """The task's events as the log has them: what a stuck task went through."""
    reader = KafkaEventLog.from_url(deployment.env["TASKLEDGER_EVENT_LOG"])
    try:
        stream = await reader.read_stream(task_id)
    finally:
        await reader.close()
    return ", ".join(f"{e.type} by {e.actor} at {e.occurred_at}" for e in stream)


async def archived(deployment: Deployment, task_ids: list[str]) -> None:
    reader = KafkaEventLog.from_url(deployment.env["TASKLEDGER_EVENT_LOG"])
    try:
        async with asyncio.timeout(WAIT):
            for task_id in task_ids:
                while True:
                    stream = await reader.read_stream(task_id)
                    if any(e.type == "TaskArchived" and e.actor == "retention" for e in stream):
                        break
                    await asyncio.sleep(0.3)
    finally:
        await reader.close()
