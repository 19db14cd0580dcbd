"""The dispatcher's checkpoint: written a moment after its dispatches, not after each batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aggregates import TaskState, fold
from miners.identity import Identity
from taskledger.settings import Settings
from taskledger.system import build_system
from tests.support.fast_miners import FakeMiner, answer


async def test_the_checkpoint_catches_up_once_the_dispatching_is_done(tmp_path: Path) -> None:
    miner = await FakeMiner("5CheckpointMiner", answer).start()
    settings = Settings(
        data_dir=tmp_path,
        durability="normal",
        miners_per_type={"summarization": 1},
        allow_private_miners=True,
    )
    system = build_system(
        settings, extra_miners=[miner.info], identity=Identity.from_uri("//TaskledgerTestProxy")
    )
    await system.start()
    try:
        state, _ = await system.intake.submit(
            client="tester", task_type="summarization", priority="normal", input={"text": "One."}
        )
        created = (await system.log.read_stream(state.task_id))[0].position
        assert created is not None
        checkpoint = None
        for _ in range(150):
            checkpoint = await system.log.load_checkpoint("dispatcher")
            if checkpoint is not None and int(checkpoint) >= created:
                break
            await asyncio.sleep(0.02)
        assert checkpoint is not None and int(checkpoint) >= created
        distributed = await system.commands.load(state.task_id)
        assert distributed.status in ("DISTRIBUTED", "DONE")
    finally:
        await system.close()
        await miner.stop()


async def test_a_task_whose_stream_reads_late_is_still_distributed(tmp_path: Path) -> None:
    """On Kafka the dispatcher's subscription can hand it a TaskCreated a moment before a
    read of the task's stream in the same process finds it; the task must not be dropped."""
    miner = await FakeMiner("5LateReadMiner", answer).start()
    settings = Settings(
        data_dir=tmp_path,
        durability="normal",
        miners_per_type={"summarization": 1},
        allow_private_miners=True,
    )
    system = build_system(
        settings, extra_miners=[miner.info], identity=Identity.from_uri("//TaskledgerTestProxy")
    )
    reads = system.commands.load
    lagged: set[str] = set()

    async def first_read_lags(task_id: str) -> TaskState:
        if task_id not in lagged:
            lagged.add(task_id)
            return fold(task_id, [])
        return await reads(task_id)

    system.commands.load = first_read_lags  # type: ignore[method-assign]
    await system.start()
    try:
        state, _ = await system.intake.submit(
            client="tester", task_type="summarization", priority="normal", input={"text": "One."}
        )
        status = "PENDING"
        for _ in range(150):
            status = (await reads(state.task_id)).status
            if status != "PENDING":
                break
            await asyncio.sleep(0.02)
        assert state.task_id in lagged  # the dispatcher did read late
        assert status in ("DISTRIBUTED", "DONE")
    finally:
        await system.close()
        await miner.stop()
