"""Projection workers on Kafka: two `serve --role projections` processes share the events
partitions; one is killed with SIGKILL while tasks are written, the other takes its
partitions, and the read models end equal to a rebuild from the log.

Tasks and miner counters must be equal exactly. The miner moving averages (latency,
reward) are folded across partitions in commit order, which a rebuild (partition after
partition) does not repeat: each is checked to lie within the values the miner was
measured at, as any order's average does (see ``processors.kafka.projection_workers``).
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from bench.workload import lifecycle
from events.kafka import KafkaEventLog
from processors.commands import EmbeddedCommands
from processors.kafka.projection_workers import partition_consumer
from projections import MinerStats, Projector, rebuild
from projections.sqlite_store import SqliteReadModelStore
from tests.support.kafka_broker import KafkaBroker
from tests.support.serve_deployment import Deployment

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TASKS = 240
KILL_AFTER = 80
PARTITIONS = 4
ASSIGNED = re.compile(r"projecting events partitions \[([\d, ]*)\]")


def partitions_of(deployment: Deployment, process: subprocess.Popen[bytes]) -> set[int] | None:
    """The partitions a worker was last assigned, from its log (None: not yet)."""
    index = deployment.processes.index(process)
    found = ASSIGNED.findall((deployment.root / f"projections-{index}.err").read_text())
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else None


async def until(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.2)


async def write_tasks(log: KafkaEventLog, indexes: range) -> list[str]:
    commands = EmbeddedCommands(log)

    async def one(index: int) -> str:
        flow = lifecycle(index)
        for command in flow.commands:
            await commands.execute(flow.task_id, command, actor="tests")
        return flow.task_id

    ids: list[str] = []
    for start in range(indexes.start, indexes.stop, 20):
        ids += await asyncio.gather(*(one(i) for i in range(start, min(start + 20, indexes.stop))))
    return ids


def counters(stats: MinerStats) -> tuple[int, ...]:
    return (
        stats.assigned,
        stats.responded,
        stats.failed,
        stats.timed_out,
        stats.in_flight,
        stats.evaluations,
    )


async def test_a_worker_killed_under_load_leaves_read_models_equal_to_a_rebuild(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    prefix = f"pw-{uuid.uuid4().hex[:10]}"
    event_log = f"kafka://{kafka.bootstrap}?prefix={prefix}&partitions={PARTITIONS}"
    miners_file = tmp_path / "miners.json"
    miners_file.write_text("[]")
    deployment = Deployment(tmp_path, event_log, miners_file)
    log = KafkaEventLog.from_url(event_log)
    try:
        await log.start()  # the topics, before the workers join their group
        doomed, survivor = (deployment.start("projections") for _ in range(2))

        async def both_assigned() -> bool:
            crashed = [p.args for p in deployment.processes if p.poll() is not None]
            assert not crashed, deployment.logs()
            shares = [partitions_of(deployment, p) for p in (doomed, survivor)]
            return all(shares) and set().union(*shares) == set(range(PARTITIONS))  # type: ignore[arg-type]

        await until(both_assigned, 90, "both workers assigned a share")
        share = partitions_of(deployment, doomed) or set()
        live = SqliteReadModelStore(deployment.data_dir / "readmodels.db")
        rebuilt = SqliteReadModelStore(tmp_path / "rebuilt.db")
        try:
            task_ids = await write_tasks(log, range(KILL_AFTER))

            async def doomed_folded() -> bool:
                # Its partitions' checkpoints: only the doomed worker folds those.
                checkpoints = [await live.checkpoint(partition_consumer(p)) for p in share]
                return all(checkpoints)

            await until(doomed_folded, 60, "the doomed worker folded its share")
            doomed.send_signal(signal.SIGKILL)
            task_ids += await write_tasks(log, range(KILL_AFTER, TASKS))

            await rebuild(log, Projector(rebuilt))
            expected = await rebuilt.get_tasks(task_ids)
            assert len(expected) == TASKS

            async def caught_up() -> bool:
                assert survivor.poll() is None, deployment.logs()
                return await live.get_tasks(task_ids) == expected

            await until(caught_up, 120, "the survivor folded every event")
            assert partitions_of(deployment, survivor) == set(range(PARTITIONS))
            miners, again = await live.all_miners(), await rebuilt.all_miners()
            assert [m.hotkey for m in miners] == [m.hotkey for m in again]
            for stats, reference in zip(miners, again, strict=True):
                assert counters(stats) == counters(reference)
                # Latencies 10 to 12 ms, rewards 0.5 to 0.7 (bench.workload), from 0.
                assert stats.latency_ms_avg is not None and 10.0 <= stats.latency_ms_avg <= 12.0
                assert 0.0 < stats.reward_avg <= 0.7
        finally:
            await rebuilt.close()
            await live.close()
    except BaseException:
        deployment.stop()
        print(deployment.logs())
        raise
    finally:
        await log.close()
    deployment.stop()
    assert doomed.returncode == -signal.SIGKILL
    assert survivor.returncode == 0, deployment.logs()
