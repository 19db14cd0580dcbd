"""The projector's kept states, and the projection runner in a process of its own."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from aggregates import TaskState, fold
from bench.workload import lifecycle
from events import Batch, Envelope
from events.sqlite_connect import open_wal
from events.sqlite_log import SqliteEventLog
from processors.command_core import CommandRequest
from processors.commands import EmbeddedCommands
from projections import CONSUMER, MinerStats, Projector
from projections.miner_stats import MinerTally
from projections.sqlite_store import SqliteReadModelStore
from taskledger.projection_process import ProjectionProcess, follow_log_file

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def write_lifecycles(log: SqliteEventLog, count: int) -> list[str]:
    commands = EmbeddedCommands(log)
    flows = [lifecycle(n, NOW) for n in range(count)]
    for step in range(len(flows[0].commands)):
        for result in await commands.execute_many(
            [CommandRequest(f.task_id, f.commands[step], "tests") for f in flows]
        ):
            assert not isinstance(result, Exception)
    return [flow.task_id for flow in flows]


async def everything(log: SqliteEventLog) -> list[Envelope]:
    return [e async for b in log.subscribe(follow=False) for e in b.events]


def batches(events: Sequence[Envelope], *cuts: int) -> list[Batch]:
    edges = [0, *cuts, len(events)]
    return [
        Batch(tuple(events[start:end]), str(events[end - 1].position))
        for start, end in itertools.pairwise(edges)
    ]


class CountingStore(SqliteReadModelStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.asked: list[str] = []

    async def get_tasks(self, task_ids: Sequence[str]) -> dict[str, TaskState]:
        self.asked += task_ids
        return await super().get_tasks(task_ids)


async def test_the_projector_reads_a_task_from_the_store_once(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    store = CountingStore(tmp_path / "read.db")
    try:
        tasks = await write_lifecycles(log, 3)
        projector = Projector(store)
        events = await everything(log)
        for batch in batches(events, 5, 11, 17):
            await projector.apply(batch)
        assert sorted(store.asked) == sorted(tasks)
        assert await store.get_tasks(tasks) == {t: fold(t, await log.read_stream(t)) for t in tasks}
    finally:
        await log.close()
        await store.close()


async def test_kept_states_are_dropped_when_another_writer_moved_the_checkpoint(
    tmp_path: Path,
) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    store = SqliteReadModelStore(tmp_path / "read.db")
    alone = SqliteReadModelStore(tmp_path / "alone.db")
    try:
        tasks = await write_lifecycles(log, 2)
        events = await everything(log)
        first, second, third = batches(events, 4, 9)
        one, other = Projector(store), Projector(store)
        await one.apply(first)
        await other.apply(second)  # a duplicate projector got ahead of the first
        await one.apply(third)
        await Projector(alone).apply(Batch(tuple(events), third.checkpoint))
        expected = {t: fold(t, await log.read_stream(t)) for t in tasks}
        assert await store.get_tasks(tasks) == expected
        assert await store.all_miners() == await alone.all_miners()
        assert await store.checkpoint(CONSUMER) == third.checkpoint
    finally:
        await log.close()
        await store.close()
        await alone.close()


async def test_kept_states_are_dropped_after_a_reset(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    store = SqliteReadModelStore(tmp_path / "read.db")
    try:
        tasks = await write_lifecycles(log, 2)
        events = await everything(log)
        projector = Projector(store)
        for batch in batches(events, 6):
            await projector.apply(batch)
        await store.reset()
        for batch in batches(events, 6):
            await projector.apply(batch)
        assert await store.get_tasks(tasks) == {t: fold(t, await log.read_stream(t)) for t in tasks}
        assert sum(m.assigned for m in await store.all_miners()) == 2 * 3
    finally:
        await log.close()
        await store.close()


async def test_following_the_log_file_projects_until_told_to_stop(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    store = SqliteReadModelStore(tmp_path / "read.db")
    stop = asyncio.Event()
    ready = asyncio.Event()
    try:
        following = asyncio.create_task(
            follow_log_file(
                tmp_path / "events.db",
                tmp_path / "read.db",
                stop=stop.is_set,
                ready=ready.set,
                check_seconds=0.01,
            )
        )
        await asyncio.wait_for(ready.wait(), 10)
        tasks = await write_lifecycles(log, 4)
        head = await log.head_position()
        deadline = time.monotonic() + 20
        while await store.checkpoint(CONSUMER) != str(head):
            assert time.monotonic() < deadline and not following.done()
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(following, 10)
        assert await store.get_tasks(tasks) == {t: fold(t, await log.read_stream(t)) for t in tasks}
    finally:
        await log.close()
        await store.close()


async def test_a_projection_process_follows_appends_made_here(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    store = SqliteReadModelStore(tmp_path / "read.db")
    process = ProjectionProcess(tmp_path / "events.db", tmp_path / "read.db")
    try:
        process.start()
        assert process.alive
        tasks = await write_lifecycles(log, 5)
        head = await log.head_position()
        deadline = time.monotonic() + 30
        while await store.checkpoint(CONSUMER) != str(head):
            assert time.monotonic() < deadline and process.alive
            await asyncio.sleep(0.02)
        assert process.stop() == 0
        assert not process.alive
        assert await store.get_tasks(tasks) == {t: fold(t, await log.read_stream(t)) for t in tasks}
    finally:
        process.stop()
        await log.close()
        await store.close()


def test_miner_statistics_updates_change_only_their_counters() -> None:
    stats = MinerStats("m", 5, 3, 1, 1, 2, 12.0, 0.4, 7)
    assert stats.on_assigned() == replace(stats, assigned=6, in_flight=3)
    assert stats.on_responded(2.0) == replace(
        stats, responded=4, in_flight=1, latency_ms_avg=12.0 + 0.2 * (2.0 - 12.0)
    )
    assert stats.on_failed() == replace(stats, failed=2, in_flight=1)
    assert stats.on_timed_out() == replace(stats, timed_out=2, in_flight=1)
    assert stats.on_rewarded(1.0) == replace(
        stats, reward_avg=0.4 + 0.1 * (1.0 - 0.4), evaluations=8
    )
    assert MinerStats("n").on_responded(9.0).latency_ms_avg == 9.0


def test_a_tally_counts_as_the_updates_one_by_one_do() -> None:
    start = MinerStats("m", 5, 3, 1, 1, 2, None, 0.4, 7)
    tally = MinerTally(start)
    tally.count_assignment()
    tally.count_response(30.0)
    tally.count_assignment()
    tally.count_response(10.0)
    tally.count_reward(0.9)
    tally.count_failure()
    tally.count_timeout()
    tally.count_reward(0.2)
    one_by_one = (
        start.on_assigned()
        .on_responded(30.0)
        .on_assigned()
        .on_responded(10.0)
        .on_rewarded(0.9)
        .on_failed()
        .on_timed_out()
        .on_rewarded(0.2)
    )
    assert tally.stats() == one_by_one
    assert MinerTally(start).stats() == start


async def test_new_read_models_get_16_kib_pages_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    old = open_wal(tmp_path / "old.db")
    old.execute("CREATE TABLE t (x)")
    old.close()
    store = SqliteReadModelStore(tmp_path / "rm.db")
    kept = SqliteReadModelStore(tmp_path / "old.db")
    log = SqliteEventLog(tmp_path / "events.db")
    try:
        assert store._writer.execute("PRAGMA page_size").fetchone() == (16_384,)
        assert kept._writer.execute("PRAGMA page_size").fetchone() == (4_096,)
        assert log._writer.execute("PRAGMA page_size").fetchone() == (4_096,)
    finally:
        await log.close()
        await store.close()
        await kept.close()
