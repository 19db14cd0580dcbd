"""Dispatching only the partitions a process owns (processors/kafka/owned.py), with the
embedded pieces: taking a partition queues its PENDING tasks and sends its DISTRIBUTED tasks'
work again; losing one drops its tasks from the queue; committed events are followed; the
deadline keeper leaves other owners' tasks alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from processors.deadlines import DeadlineKeeper
from processors.dispatcher import Dispatcher
from processors.kafka.owned import OwnedPartitions
from processors.runtime import Runtime
from processors.selection import SelectionPolicy
from taskledger.system import System, build_system
from tests.support.embedded_system import PROXY, is_status, settings_for, submit, wait_for
from tests.support.fast_miners import FakeMiner, silent


@pytest.fixture
async def miner() -> AsyncIterator[FakeMiner]:
    started = await FakeMiner("5Owned", silent).start()
    yield started
    await started.stop()


@pytest.fixture
async def system(tmp_path: Path, miner: FakeMiner) -> AsyncIterator[System]:
    """Commands and projections, but nobody dispatching."""
    settings = settings_for(
        tmp_path, miners_per_type={"summarization": 1}, task_deadline_seconds=60.0
    )
    built = build_system(settings, extra_miners=[miner.info], identity=PROXY, with_processors=False)
    await built.start()
    projecting = Runtime()
    built._register_singletons(projecting)
    await projecting.start()
    try:
        yield built
    finally:
        await projecting.stop()
        await built.close()


class Partitions:
    """Tasks put in partitions by hand."""

    def __init__(self) -> None:
        self.of: dict[str, int] = {}

    def __call__(self, task_id: str) -> int:
        return self.of[task_id]


async def pending(system: System, partitions: Partitions, partition: int) -> str:
    task_id = await submit(system, text=f"For partition {partition}.")
    partitions.of[task_id] = partition
    await wait_for(system, task_id, is_status("PENDING"))
    return task_id


def owned_dispatcher(system: System, owned: OwnedPartitions) -> Dispatcher:
    return system._register_owned(Runtime(), owned.owns)


def times_sent(miner: FakeMiner, task_id: str) -> int:
    return [p["task_id"] for p in miner.received].count(task_id)


async def test_taking_a_partition_queues_its_pending_tasks_and_resends_its_work(
    system: System, miner: FakeMiner
) -> None:
    partitions = Partitions()
    owned = OwnedPartitions(partitions)
    dispatcher = owned_dispatcher(system, owned)
    first = await pending(system, partitions, 0)
    second = await pending(system, partitions, 1)

    owned.owned([0])
    assert await owned.sweep_once(dispatcher) == 1
    await wait_for(system, first, is_status("DISTRIBUTED"))
    # As the command processor tells it once the distribution is committed.
    owned.committed(await system.log.read_stream(first))
    await system.sender.drain()
    assert times_sent(miner, first) == 1
    assert (await system.commands.load(second)).status == "PENDING"

    # Another process owns partition 1 and distributes its task, then dies.
    other = OwnedPartitions(partitions)
    other.owned([1])
    assert await other.sweep_once(owned_dispatcher(system, other)) == 1
    await wait_for(system, second, is_status("DISTRIBUTED"))
    await system.sender.drain()
    assert times_sent(miner, second) == 1

    # A sweep finds nothing new: the distributed task is not queued again, nor its work
    # sent again, as it was sent from here.
    assert await owned.sweep_once(dispatcher) == 0

    # All lost and taken again, with partition 1 (as in a rebalance after the death): the
    # work of the dead owner's DISTRIBUTED task goes out again, once; this process's own
    # is still awaited by its work sender, so it is not sent again.
    owned.owned([])
    owned.owned([0, 1])
    assert await owned.sweep_once(dispatcher) == 0
    assert await owned.sweep_once(dispatcher) == 0
    await system.sender.drain()
    assert (times_sent(miner, first), times_sent(miner, second)) == (1, 2)
    for task_id in (first, second):
        stream = await system.log.read_stream(task_id)
        assert [e.type for e in stream].count("TaskDistributed") == 1


async def test_losing_a_partition_drops_its_queued_tasks(system: System) -> None:
    partitions = Partitions()
    owned = OwnedPartitions(partitions)
    dispatcher = owned_dispatcher(system, owned)
    system.selector.policy = SelectionPolicy(max_in_flight=0)  # no miner is free
    waiting = await pending(system, partitions, 1)
    owned.owned([0, 1])
    assert await owned.sweep_once(dispatcher) == 1
    for _ in range(250):
        if dispatcher._waiting:
            break
        await asyncio.sleep(0.02)
    assert [item[2] for item in dispatcher._waiting] == [waiting]

    owned.owned([0])  # another process owns partition 1 now
    system.selector.policy = SelectionPolicy()
    await dispatcher.retry_waiting()
    assert waiting not in dispatcher.queued() and not dispatcher._waiting
    assert (await system.commands.load(waiting)).status == "PENDING"  # its new owner's


async def test_committed_events_of_owned_partitions_are_dispatched(system: System) -> None:
    partitions = Partitions()
    owned = OwnedPartitions(partitions, sweep_seconds=3600)
    dispatcher = owned_dispatcher(system, owned)
    ours = await pending(system, partitions, 0)
    theirs = await pending(system, partitions, 1)
    running = asyncio.create_task(owned.run(dispatcher))
    try:
        owned.owned([0])
        # As the command processor tells it after each commit: the TaskCreated events.
        for task_id in (theirs, ours):
            owned.committed(await system.log.read_stream(task_id))
        await wait_for(system, ours, is_status("DISTRIBUTED"))
        assert (await system.commands.load(theirs)).status == "PENDING"
        assert dispatcher.distributed == 1
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_the_deadline_keeper_times_out_only_owned_tasks(system: System) -> None:
    partitions = Partitions()
    ours = await pending(system, partitions, 0)
    theirs = await pending(system, partitions, 1)
    later = system.clock() + timedelta(hours=1)
    keeper = DeadlineKeeper(
        system.commands, system.store, system.sender, lambda: later, owns=lambda t: t == ours
    )
    assert await keeper.tick() == 1
    assert (await system.commands.load(ours)).status == "FAILED"
    assert (await system.commands.load(theirs)).status == "PENDING"


async def test_the_read_model_is_swept_often_only_while_a_taken_partition_settles(
    system: System,
) -> None:
    owned = OwnedPartitions(
        Partitions(), sweep_seconds=0.02, settle_seconds=0.5, quiet_sweep_seconds=3600
    )
    dispatcher = owned_dispatcher(system, owned)
    sweeps: list[float] = []
    sweep = dispatcher.sweep

    async def counted(redeliver: Callable[[str], bool] | None = None) -> int:
        sweeps.append(asyncio.get_running_loop().time())
        return await sweep(redeliver)

    dispatcher.sweep = counted  # type: ignore[method-assign]
    running = asyncio.create_task(owned.run(dispatcher))
    try:
        owned.owned([0])
        await asyncio.sleep(1.0)  # the settling minute, shortened to half a second
        settled = len(sweeps)
        assert settled >= 2
        await asyncio.sleep(0.5)
        assert len(sweeps) == settled  # quiet: the next sweep is an hour away
        owned.owned([0, 1])  # a partition taken: swept at once, and often again
        await asyncio.sleep(0.3)
        assert len(sweeps) >= settled + 2
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
