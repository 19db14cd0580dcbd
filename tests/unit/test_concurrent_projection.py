"""Several projectors writing one SQLite read-model store at once (projection workers)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from events import Batch
from events.sqlite_log import SqliteEventLog
from projections import MinerStats, Projector
from projections.miner_stats import MinerCount
from projections.sqlite_store import SqliteReadModelStore
from tests.support.lifecycle_log import write_lifecycles

HOTKEY = "hk-shared"
COMMITS = 150


def _commit_in_thread(path: Path, task_ids: Sequence[str], errors: list[BaseException]) -> None:
    """One writer: its own connection, its own loop, as a worker process would have."""

    async def commits() -> None:
        store = SqliteReadModelStore(path)
        try:
            for task_id in task_ids:
                count = MinerCount(task_id, 1, HOTKEY, "assigned")
                await store.commit(f"writer-{task_ids[0]}", "1", [], [count])
        finally:
            await store.close()

    try:
        asyncio.run(commits())
    except BaseException as error:  # reported by the test, not lost in the thread
        errors.append(error)


def test_two_writers_counting_into_one_miner_at_once_lose_no_count(tmp_path: Path) -> None:
    path = tmp_path / "read.db"
    SqliteReadModelStore(path)  # the schema, before the writers race to make it
    errors: list[BaseException] = []
    shares = [[f"a{i}" for i in range(COMMITS)], [f"b{i}" for i in range(COMMITS)]]
    threads = [
        threading.Thread(target=_commit_in_thread, args=(path, share, errors)) for share in shares
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)

    async def stored() -> MinerStats:
        store = SqliteReadModelStore(path)
        try:
            return (await store.get_miners([HOTKEY]))[HOTKEY]
        finally:
            await store.close()

    stats = asyncio.run(stored())
    assert (stats.assigned, stats.in_flight) == (2 * COMMITS, 2 * COMMITS)


async def test_a_batch_applied_again_by_another_projector_changes_nothing(
    tmp_path: Path,
) -> None:
    task_ids = await write_lifecycles(tmp_path, 3)
    log = SqliteEventLog(tmp_path / "events.db")
    store = SqliteReadModelStore(tmp_path / "read.db")
    try:
        events = [e async for b in log.subscribe(follow=False, batch_size=1000) for e in b.events]
        batch = Batch(tuple(events), str(len(events)))
        await Projector(store).apply(batch)
        tasks, miners = await store.get_tasks(task_ids), await store.all_miners()
        # A second worker folding the same batch under a checkpoint of its own. (Its
        # stale read, before the first commit, is the contract's concern: see
        # test_counts_of_events_already_applied_to_their_task_are_dropped.)
        await Projector(store, consumer="projections.other").apply(batch)
        assert await store.get_tasks(task_ids) == tasks
        assert await store.all_miners() == miners
        assert sum(m.assigned for m in miners) > 0
    finally:
        await log.close()
        await store.close()
