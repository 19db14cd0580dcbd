"""The processors on the embedded runtime, with real HTTP miners on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from audit.log_audit import audit_log
from miners.directory import MinerDirectory, MinerInfo
from processors.runtime import Runtime
from processors.selection import SelectionPolicy
from taskledger.settings import Settings
from taskledger.system import System, build_system
from tests.support.embedded_system import PROXY, is_status, settings_for, submit, wait_for
from tests.support.fast_miners import FakeMiner, answer, garbage, refuse, silent, slow


async def running(settings: Settings, miners: Iterable[FakeMiner], **kwargs: Any) -> System:
    system = build_system(settings, extra_miners=[m.info for m in miners], identity=PROXY, **kwargs)
    await system.start()
    return system


@pytest.fixture
async def miners() -> AsyncIterator[list[FakeMiner]]:
    started: list[FakeMiner] = []
    yield started
    for miner in started:
        await miner.stop()


async def start(miners: list[FakeMiner], hotkey: str, behaviour: Any) -> FakeMiner:
    miner = await FakeMiner(hotkey, behaviour).start()
    miners.append(miner)
    return miner


async def test_a_task_reaches_done_then_approved_and_weights_sum_to_one(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    await start(miners, "5MinerA", answer)
    await start(miners, "5MinerB", slow(0.05))
    system = await running(settings_for(tmp_path), miners)
    try:
        task_id = await submit(system)
        done = await wait_for(system, task_id, is_status("DONE"))
        assert {slot.state for slot in done.miners} == {"responded"}
        assert len(done.miners) == 2
        approved = await system.evaluations.evaluate(
            "5Validator", task_id, {"5MinerA": 0.2, "5MinerB": 0.8}
        )
        assert approved.status == "APPROVED"
        assert approved.winner == "5MinerB"
        await wait_for(system, task_id, is_status("APPROVED"))
        weights = await system.evaluations.weights()
        assert weights["5MinerB"] > weights["5MinerA"] > 0
        assert sum(weights.values()) == pytest.approx(1.0)
    finally:
        await system.close()


async def test_a_refusing_miner_is_replaced_by_another(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    await start(miners, "5Refuser", refuse)
    await start(miners, "5Good1", answer)
    await start(miners, "5Good2", answer)
    settings = settings_for(tmp_path, miners_per_type={"summarization": 2})
    system = await running(settings, miners)
    try:
        for _ in range(4):  # round-robin among equals: the refuser gets picked at least once
            task_id = await submit(system)
            done = await wait_for(system, task_id, is_status("DONE"))
            by_hotkey = {slot.hotkey: slot for slot in done.miners}
            if "5Refuser" in by_hotkey:
                assert by_hotkey["5Refuser"].state == "failed"
                replacement = [s for s in done.miners if s.replaces == "5Refuser"]
                assert len(replacement) == 1 and replacement[0].state == "responded"
                break
        else:
            raise AssertionError("the refusing miner was never chosen")
    finally:
        await system.close()


async def test_a_garbage_answer_counts_as_a_failure(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    await start(miners, "5Garbage", garbage)
    system = await running(settings_for(tmp_path, miners_per_type={"summarization": 1}), miners)
    try:
        task_id = await submit(system)
        failed = await wait_for(system, task_id, is_status("FAILED"))
        assert failed.miners[0].state == "failed"
        assert "invalid result" in (failed.miners[0].reason or "")
        assert failed.error is not None and failed.error["code"] == "no_response"
    finally:
        await system.close()


async def test_a_silent_miner_times_out_and_fails_over(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    await start(miners, "5Silent", silent)
    await start(miners, "5Answers", answer)
    settings = settings_for(tmp_path, miners_per_type={"summarization": 1})
    system = await running(settings, miners)
    try:
        seen_timeout = False
        for _ in range(4):
            task_id = await submit(system)
            done = await wait_for(system, task_id, is_status("DONE", "FAILED"))
            assert done.status == "DONE"
            states = {slot.hotkey: slot.state for slot in done.miners}
            if states.get("5Silent") == "timed_out":
                assert states["5Answers"] == "responded"
                seen_timeout = True
                break
        assert seen_timeout
    finally:
        await system.close()


async def test_deadline_passes_with_no_answer_then_the_task_fails(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    await start(miners, "5Silent1", silent)
    await start(miners, "5Silent2", silent)
    settings = settings_for(tmp_path, task_deadline_seconds=1.5, miner_timeout_seconds=0.4)
    system = await running(settings, miners)
    try:
        task_id = await submit(system)
        failed = await wait_for(system, task_id, is_status("FAILED"), seconds=6)
        assert failed.error is not None
        assert failed.error["code"] in ("no_response", "deadline_exceeded")
        assert all(slot.state == "timed_out" for slot in failed.miners)
        report = await audit_log(system.log)
        assert report.clean, report.violations
    finally:
        await system.close()


class GrowingDirectory:
    """A directory whose miners the test adds while the system runs."""

    def __init__(self) -> None:
        self.known: list[MinerInfo] = []

    async def miners(self) -> list[MinerInfo]:
        return list(self.known)

    async def validators(self) -> frozenset[str]:
        return frozenset()


async def test_higher_priorities_are_served_first(tmp_path: Path, miners: list[FakeMiner]) -> None:
    directory = GrowingDirectory()
    system = build_system(
        settings_for(tmp_path, miners_per_type={"summarization": 1}), identity=PROXY
    )
    system.pool._directory = directory  # a directory that can grow during the test
    system.selector.policy = SelectionPolicy(max_in_flight=1)
    await system.start()
    try:
        order = [("low", "low"), ("normal", "normal"), ("critical", "critical"), ("high", "high")]
        ids = {name: await submit(system, priority=priority) for name, priority in order}
        await asyncio.sleep(0.3)  # every task is queued, none can be distributed yet
        directory.known.append((await start(miners, "5OnlyMiner", slow(0.05))).info)
        await system.pool.refresh()
        for task_id in ids.values():
            await wait_for(system, task_id, is_status("DONE"))
        distributed_at = {}
        for name, task_id in ids.items():
            stream = await system.log.read_stream(task_id)
            distributed_at[name] = next(e.position for e in stream if e.type == "TaskDistributed")
        assert sorted(distributed_at, key=distributed_at.__getitem__) == [
            "critical",
            "high",
            "normal",
            "low",
        ]
    finally:
        await system.close()


async def test_pending_tasks_survive_a_restart(tmp_path: Path, miners: list[FakeMiner]) -> None:
    empty: MinerDirectory = GrowingDirectory()
    first = build_system(settings_for(tmp_path, task_deadline_seconds=30), identity=PROXY)
    first.pool._directory = empty
    await first.start()
    ids = [await submit(first) for _ in range(5)]
    await asyncio.sleep(0.2)
    await first.close()

    await start(miners, "5After1", answer)
    await start(miners, "5After2", answer)
    second = await running(settings_for(tmp_path, task_deadline_seconds=30), miners)
    try:
        for task_id in ids:
            await wait_for(second, task_id, is_status("DONE"))
        assert (await audit_log(second.log)).clean
    finally:
        await second.close()


async def test_retention_deletes_files_but_keeps_the_facts(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    await start(miners, "5Tts1", answer)
    settings = settings_for(tmp_path, miners_per_type={"tts": 1}, retention_seconds=0.5)
    system = await running(settings, miners)
    try:
        state, _ = await system.intake.submit(
            client="tester", task_type="tts", priority="normal", input={"text": "hi"}
        )
        done = await wait_for(system, state.task_id, is_status("DONE"))
        digest = done.miners[0].result["audio"]["digest"]  # type: ignore[index]
        assert await system.blobs.exists(digest)
        await system.evaluations.evaluate("5V", state.task_id, {"5Tts1": 1.0})
        archived = await wait_for(system, state.task_id, lambda s: s.archived, seconds=15)
        assert archived.status == "APPROVED"
        assert not await system.blobs.exists(digest)
        stream = await system.log.read_stream(state.task_id)
        assert stream[-1].type == "TaskArchived"
        assert stream[-1].data["blobs_deleted"] == [digest]
        assert (await audit_log(system.log)).clean
    finally:
        await system.close()


async def test_a_rebuild_yields_identical_read_models(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    await start(miners, "5R1", answer)
    await start(miners, "5R2", refuse)
    await start(miners, "5R3", answer)
    system = await running(settings_for(tmp_path), miners)
    try:
        ids = [await submit(system, text=f"Text {n}. More text.") for n in range(12)]
        for task_id in ids:
            await wait_for(system, task_id, is_status("DONE", "FAILED"))
        await asyncio.sleep(0.2)
        before = await system.store.get_tasks(ids)
        miners_before = await system.store.all_miners()
    finally:
        await system.close()

    from projections import Projector, rebuild
    from taskledger.backends import open_event_log, open_read_models

    settings = settings_for(tmp_path)
    log, store = open_event_log(settings), open_read_models(settings)
    try:
        await rebuild(log, Projector(store))
        assert await store.get_tasks(ids) == before
        assert await store.all_miners() == miners_before
    finally:
        await log.close()
        await store.close()


async def test_the_dispatcher_distributes_at_creation_only_when_no_task_waits(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    """What the Kafka command processor asks the dispatcher when it creates a task."""
    miner = await start(miners, "5AtOnce", answer)
    system = await running(
        settings_for(tmp_path, miners_per_type={"summarization": 1}), [miner], with_processors=False
    )
    dispatcher = system._register_owned(Runtime(), None)
    dispatching: asyncio.Task[None] | None = None
    try:
        task_id = await submit(system)
        created = await system.commands.load(task_id)
        assert await dispatcher.distribution_at_creation(created) is None  # not started yet
        dispatching = asyncio.create_task(dispatcher.run())
        for _ in range(250):  # the subscription hands it the task, which it distributes
            if (await system.commands.load(task_id)).status != "PENDING":
                break
            await asyncio.sleep(0.02)
        stream = await system.log.read_stream(task_id)
        assert [e.type for e in stream[:2]] == ["TaskCreated", "TaskDistributed"]

        busy = system.selector.in_flight["5AtOnce"]
        command = await dispatcher.distribution_at_creation(created)
        assert command is not None and [a.hotkey for a in command.assignments] == ["5AtOnce"]
        assert system.selector.in_flight["5AtOnce"] == busy + 1  # busy until told
        dispatcher.distributed_at_creation(command, None)
        assert system.selector.in_flight["5AtOnce"] == busy

        # A task distributed in its creation's transaction is not queued; one created alone is.
        dispatcher.observe(stream[:2])
        assert task_id not in dispatcher._queued
        dispatcher.observe(stream[:1])
        assert task_id in dispatcher._queued
        dispatcher._forget(task_id)

        # While a task waits for a miner, new tasks queue behind it rather than jump it.
        system.selector.policy = SelectionPolicy(max_in_flight=0)
        waiting = await submit(system, text="Waits.")
        for _ in range(250):
            if dispatcher._waiting:
                break
            await asyncio.sleep(0.02)
        system.selector.policy = SelectionPolicy()
        assert [item[2] for item in dispatcher._waiting] == [waiting]
        assert await dispatcher.distribution_at_creation(created) is None
    finally:
        if dispatching is not None:
            dispatching.cancel()
        await system.close()
