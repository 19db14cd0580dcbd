"""The read-model store contract, written once and run against every backend.

A backend's test module subclasses ``ReadModelStoreContract`` as ``Test<Backend>`` and
implements ``make_store``; a backend is correct when the whole suite passes.

Every task state here is real: decided and folded by the aggregate (through the
``Ledger`` of ``tests.support.histories``), never a hand-written document.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import itertools
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregates import (
    ArchiveTask,
    CancelTask,
    Command,
    CreateTask,
    DistributeTask,
    RecordResponse,
    TaskState,
    fold,
)
from events import MinerAssignment, Priority
from events.sqlite_log import SqliteEventLog
from processors.commands import EmbeddedCommands
from projections import MinerStats, Projector, ReadModelStore
from projections.miner_stats import CountKind, MinerCount
from tests.support.histories import ENDINGS, MINER_TIMEOUT, Ledger, interleave, lifecycle

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOTKEYS = ("hk-a", "hk-b")
CONSUMER = "projections"

_checkpoints = itertools.count(1)


def next_checkpoint() -> str:
    """Log positions only grow; every commit of the suite takes the next one."""
    return str(next(_checkpoints))


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class Tasks:
    """Builds task states by deciding commands and folding their events."""

    def __init__(self) -> None:
        self.ledger = Ledger()

    def run(self, task_id: str, commands: Iterable[Command]) -> list[TaskState]:
        """The state after each command."""
        states = []
        for command in commands:
            self.ledger.execute(task_id, command)
            states.append(self.ledger.state(task_id))
        return states

    def create(
        self,
        task_id: str,
        *,
        at: datetime = T0,
        priority: Priority = "normal",
        client: str = "client-1",
        blobs: tuple[str, ...] = (),
    ) -> TaskState:
        command = CreateTask(
            task_type="transcription",
            priority=priority,
            input={"audio": "sha256:" + "ab" * 32, "language": "en"},
            client=client,
            deadline=at + timedelta(seconds=300),
            miners_wanted=len(HOTKEYS),
            miner_timeout_seconds=MINER_TIMEOUT.total_seconds(),
            now=at,
            blobs=blobs,
        )
        return self.run(task_id, [command])[-1]

    def distribute(self, task_id: str, at: datetime) -> TaskState:
        assignments = tuple(MinerAssignment(hotkey=h, deadline=at + MINER_TIMEOUT) for h in HOTKEYS)
        return self.run(task_id, [DistributeTask(assignments=assignments, now=at)])[-1]

    def respond(
        self, task_id: str, hotkey: str, at: datetime, result: dict[str, Any] | None = None
    ) -> TaskState:
        result = result or {"text": f"transcript by {hotkey}"}
        return self.run(task_id, [RecordResponse(hotkey, result, latency_ms=80.0, now=at)])[-1]

    def finish(
        self, task_id: str, ending: str, start: datetime, *, archive: bool = False
    ) -> TaskState:
        return self.run(task_id, lifecycle(ending, start, HOTKEYS, archive=archive))[-1]


async def commit(
    store: ReadModelStore,
    tasks: Sequence[TaskState] = (),
    counts: Sequence[MinerCount] = (),
    checkpoint: str | None = None,
) -> str:
    checkpoint = checkpoint or next_checkpoint()
    await store.commit(CONSUMER, checkpoint, tasks, counts)
    return checkpoint


def counted(
    hotkey: str, *kinds: CountKind | tuple[CountKind, float], task_id: str = "t", after: int = 0
) -> list[MinerCount]:
    """Counts for one miner, as events ``after + 1``, ``after + 2``… of ``task_id``."""
    counts = []
    for sequence, kind in enumerate(kinds, start=after + 1):
        what, value = kind if isinstance(kind, tuple) else (kind, 0.0)
        counts.append(MinerCount(task_id, sequence, hotkey, what, value))
    return counts


def miner_counts(states: Iterable[TaskState]) -> dict[str, dict[str, int]]:
    """What every miner's counters must be, read off the final task states."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for state in states:
        for slot in state.miners:
            counts[slot.hotkey]["assigned"] += 1
            counts[slot.hotkey]["in_flight" if slot.state == "assigned" else slot.state] += 1
        for hotkey in state.rewards or {}:
            counts[hotkey]["evaluations"] += 1
    fields = ("assigned", "responded", "failed", "timed_out", "in_flight", "evaluations")
    return {hotkey: {f: c[f] for f in fields} for hotkey, c in counts.items()}


def counters(stats: MinerStats) -> dict[str, int]:
    return {
        "assigned": stats.assigned,
        "responded": stats.responded,
        "failed": stats.failed,
        "timed_out": stats.timed_out,
        "in_flight": stats.in_flight,
        "evaluations": stats.evaluations,
    }


class ReadModelStoreContract(abc.ABC):
    @abc.abstractmethod
    async def make_store(self, request: pytest.FixtureRequest) -> ReadModelStore:
        """A fresh, empty store; ``request`` gives access to the backend's fixtures."""

    @pytest.fixture
    async def store(self, request: pytest.FixtureRequest) -> AsyncIterator[ReadModelStore]:
        store = await self.make_store(request)
        try:
            yield store
        finally:
            await store.close()

    # -- tasks ------------------------------------------------------------------

    async def test_every_state_of_every_lifecycle_round_trips(self, store: ReadModelStore) -> None:
        tasks = Tasks()
        for index, ending in enumerate(ENDINGS):
            task_id = f"task-{ending}"
            start = T0 + timedelta(hours=index)
            for state in tasks.run(task_id, lifecycle(ending, start, HOTKEYS, archive=True)):
                await commit(store, [state])
                assert await store.get_task(task_id) == state

    async def test_any_json_a_miner_returns_round_trips(self, store: ReadModelStore) -> None:
        tasks = Tasks()
        tasks.create("t", at=T0)
        tasks.distribute("t", T0 + timedelta(seconds=1))
        odd = {
            "segments": [[0.0, 1.5, "hello"], [1.5, 2.0, None, [True]]],
            "__reserved__": {"": "empty key", "a.b": 1, "`tick`": [{}]},
            "big": 2**53,
            "unicode": "ünïcødé \u2603 \U0001f600",
        }
        state = tasks.respond("t", HOTKEYS[0], T0 + timedelta(seconds=2), odd)
        await commit(store, [state])
        stored = await store.get_task("t")
        assert stored == state
        assert stored is not None and stored.miners[0].result == odd

    async def test_recent_tasks_in_a_status_come_newest_first_since_a_moment(
        self, store: ReadModelStore
    ) -> None:
        tasks = Tasks()
        made = [tasks.create(f"r{i}", at=T0 + timedelta(minutes=i)) for i in range(3)]
        moved = tasks.distribute("r2", T0 + timedelta(minutes=3))
        await commit(store, [*made[:2], moved])
        since = T0 + timedelta(seconds=30)
        recent = await store.recent_in_status("PENDING", since, 10)
        assert [state.task_id for state in recent] == ["r1"]
        assert await store.recent_in_status("PENDING", T0, 1) == [made[1]]
        assert await store.recent_in_status("DISTRIBUTED", since, 10) == [moved]
        assert await store.recent_in_status("APPROVED", T0, 10) == []

    async def test_an_unknown_task_is_none(self, store: ReadModelStore) -> None:
        assert await store.get_task("nobody") is None
        assert await store.get_tasks(["nobody"]) == {}
        assert await store.get_tasks([]) == {}

    async def test_get_tasks_returns_the_known_ones(self, store: ReadModelStore) -> None:
        tasks = Tasks()
        states = [tasks.create(f"t{i}", at=T0 + timedelta(seconds=i)) for i in range(5)]
        await commit(store, states)
        wanted = ["t1", "nobody", "t3", "t1"]
        assert await store.get_tasks(wanted) == {"t1": states[1], "t3": states[3]}

    async def test_an_older_or_repeated_version_never_overwrites_a_newer_one(
        self, store: ReadModelStore
    ) -> None:
        tasks = Tasks()
        states = tasks.run("t", lifecycle("approved", T0, HOTKEYS))
        older, newer = states[1], states[-1]
        assert older.version < newer.version
        await commit(store, [newer])
        await commit(store, [older])
        assert await store.get_task("t") == newer
        # The query fields follow the stored state, not the rejected one.
        assert await store.tasks_in_status(older.status, 10) == []
        assert await store.status_counts() == {newer.status: 1}
        await commit(store, [newer])
        assert await store.get_task("t") == newer

    async def test_a_commit_applies_its_newer_states_and_skips_its_older_ones(
        self, store: ReadModelStore
    ) -> None:
        tasks = Tasks()
        a_states = tasks.run("a", lifecycle("approved", T0, HOTKEYS))
        b_created = tasks.create("b", at=T0)
        b_distributed = tasks.distribute("b", T0 + timedelta(seconds=1))
        await commit(store, [a_states[-1], b_created])
        await commit(store, [a_states[0], b_distributed])
        assert await store.get_tasks(["a", "b"]) == {"a": a_states[-1], "b": b_distributed}

    # -- checkpoints ------------------------------------------------------------

    async def test_checkpoints_are_kept_per_consumer(self, store: ReadModelStore) -> None:
        assert await store.checkpoint(CONSUMER) is None
        await store.commit(CONSUMER, "41", [], [])
        await store.commit("other", "7", [], [])
        await store.commit(CONSUMER, "42", [], [])
        assert await store.checkpoint(CONSUMER) == "42"
        assert await store.checkpoint("other") == "7"
        assert await store.checkpoint("nobody") is None

    async def test_the_checkpoint_never_moves_back(self, store: ReadModelStore) -> None:
        await store.commit(CONSUMER, "100", [], [])
        await store.commit(CONSUMER, "99", [], [])
        assert await store.checkpoint(CONSUMER) == "100"
        await store.commit(CONSUMER, "100", [], [])
        assert await store.checkpoint(CONSUMER) == "100"
        # Positions compare as numbers, not as text.
        await store.commit(CONSUMER, "1000", [], [])
        assert await store.checkpoint(CONSUMER) == "1000"

    async def test_a_kafka_checkpoint_never_moves_back(self, store: ReadModelStore) -> None:
        # The Kafka log's checkpoint: the next offset of every partition.
        await store.commit(CONSUMER, '{"0":10,"1":4}', [], [])
        await store.commit(CONSUMER, '{"0":9,"1":4}', [], [])
        assert await store.checkpoint(CONSUMER) == '{"0":10,"1":4}'
        await store.commit(CONSUMER, '{"0":10,"1":5}', [], [])
        assert await store.checkpoint(CONSUMER) == '{"0":10,"1":5}'

    # -- miners -----------------------------------------------------------------

    async def test_miner_counts_fold_into_the_stored_statistics(
        self, store: ReadModelStore
    ) -> None:
        fast = MinerStats("hk-fast").on_assigned().on_responded(50.0).on_rewarded(0.8)
        slow = MinerStats("hk-slow").on_assigned().on_assigned().on_timed_out().on_failed()
        counts = counted("hk-fast", "assigned", ("responded", 50.0), ("rewarded", 0.8))
        counts += counted("hk-slow", "assigned", "assigned", "timed_out", "failed", task_id="u")
        await commit(store, counts=counts)
        assert await store.get_miners(["hk-fast", "nobody"]) == {"hk-fast": fast}
        assert await store.get_miners([]) == {}
        assert await store.all_miners() == [fast, slow]
        await commit(store, counts=counted("hk-fast", "assigned", task_id="v"))
        assert await store.get_miners(["hk-fast", "hk-slow"]) == {
            "hk-fast": fast.on_assigned(),
            "hk-slow": slow,
        }

    async def test_counts_of_events_already_applied_to_their_task_are_dropped(
        self, store: ReadModelStore
    ) -> None:
        # A duplicate writer (a redelivery, or a second worker on the same partition)
        # counted the same events: the task's stored version shows they are in.
        tasks = Tasks()
        tasks.create("t", at=T0)
        state = tasks.distribute("t", T0 + timedelta(seconds=1))
        counts = [MinerCount("t", state.version, hotkey, "assigned") for hotkey in HOTKEYS]
        checkpoint = await commit(store, [state], counts)
        once = {hotkey: MinerStats(hotkey).on_assigned() for hotkey in HOTKEYS}
        assert await store.get_miners(list(HOTKEYS)) == once
        await commit(store, [state], counts, checkpoint=checkpoint)
        await commit(store, [state], counts)
        assert await store.get_miners(list(HOTKEYS)) == once
        assert await store.get_task("t") == state

    async def test_concurrent_commits_on_the_same_miner_lose_no_count(
        self, store: ReadModelStore
    ) -> None:
        # Two workers, each folding its own tasks, both counting into the same miners.
        tasks = Tasks()
        states = {f"t{i}": tasks.create(f"t{i}", at=T0) for i in range(8)}
        distributed = {t: tasks.distribute(t, T0 + timedelta(seconds=1)) for t in states}

        async def worker(task_ids: list[str]) -> None:
            for task_id in task_ids:
                state = distributed[task_id]
                counts = [MinerCount(task_id, state.version, h, "assigned") for h in HOTKEYS]
                await store.commit(f"worker-{task_ids[0]}", next_checkpoint(), [state], counts)

        ids = list(states)
        await asyncio.gather(worker(ids[0::2]), worker(ids[1::2]))
        await worker(ids[0::2])  # and one of them again: nothing changes
        expected = MinerStats("hk-a")
        for _ in ids:
            expected = expected.on_assigned()
        assert (await store.get_miners(["hk-a"]))["hk-a"] == expected

    # -- queries ----------------------------------------------------------------

    async def test_tasks_due_are_open_tasks_by_next_deadline(self, store: ReadModelStore) -> None:
        tasks = Tasks()
        pending = tasks.create("pending", at=T0)  # due at the task deadline, T0 + 300 s
        tasks.create("distributed", at=T0)
        distributed = tasks.distribute("distributed", T0 + timedelta(seconds=1))  # miners: +31 s
        done = tasks.finish("approved", "approved", T0)
        await commit(store, [pending, distributed, done])
        assert pending.next_deadline() == T0 + timedelta(seconds=300)
        assert distributed.next_deadline() == T0 + timedelta(seconds=31)

        assert await store.tasks_due(T0 + timedelta(seconds=30), 10) == []
        assert await store.tasks_due(T0 + timedelta(seconds=31), 10) == ["distributed"]
        later = T0 + timedelta(hours=1)
        assert await store.tasks_due(later, 10) == ["distributed", "pending"]
        assert await store.tasks_due(later, 1) == ["distributed"]

    async def test_a_task_leaves_the_due_list_once_it_is_settled(
        self, store: ReadModelStore
    ) -> None:
        tasks = Tasks()
        states = tasks.run("t", lifecycle("approved", T0, HOTKEYS))
        await commit(store, [states[1]])  # distributed
        assert await store.tasks_due(T0 + timedelta(hours=1), 10) == ["t"]
        await commit(store, [states[-1]])
        assert await store.tasks_due(T0 + timedelta(hours=1), 10) == []

    async def test_tasks_in_status_highest_priority_then_oldest_first(
        self, store: ReadModelStore
    ) -> None:
        tasks = Tasks()
        at = T0 + timedelta(minutes=1)
        states = [
            tasks.create("normal", at=at, priority="normal"),
            tasks.create("high-later", at=at + timedelta(seconds=10), priority="high"),
            tasks.create("high-sooner", at=at + timedelta(seconds=5), priority="high"),
            tasks.create("low-oldest", at=at - timedelta(seconds=10), priority="low"),
            tasks.create("critical", at=at + timedelta(seconds=20), priority="critical"),
        ]
        tasks.create("critical-distributed", at=T0, priority="critical")
        states.append(tasks.distribute("critical-distributed", T0 + timedelta(seconds=1)))
        await commit(store, states)

        queue = await store.tasks_in_status("PENDING", 10)
        assert [s.task_id for s in queue] == [
            "critical",
            "high-sooner",
            "high-later",
            "normal",
            "low-oldest",
        ]
        assert queue[0] == states[4]
        top = await store.tasks_in_status("PENDING", 2)
        assert [s.task_id for s in top] == ["critical", "high-sooner"]
        distributed = await store.tasks_in_status("DISTRIBUTED", 10)
        assert distributed == [states[-1]]
        assert await store.tasks_in_status("APPROVED", 10) == []

    async def test_tasks_for_client_newest_first(self, store: ReadModelStore) -> None:
        tasks = Tasks()
        mine = [
            tasks.create(f"a{i}", at=T0 + timedelta(seconds=i), client="client-a") for i in range(3)
        ]
        theirs = tasks.create("b0", at=T0 + timedelta(seconds=9), client="client-b")
        await commit(store, [*mine, theirs])
        assert await store.tasks_for_client("client-a", 10) == mine[::-1]
        assert await store.tasks_for_client("client-a", 2) == [mine[2], mine[1]]
        assert await store.tasks_for_client("client-b", 10) == [theirs]
        assert await store.tasks_for_client("nobody", 10) == []

    async def test_tasks_to_archive_are_finished_unarchived_and_old_enough(
        self, store: ReadModelStore
    ) -> None:
        tasks = Tasks()
        approved = tasks.finish("approved", "approved", T0)
        failed = tasks.finish("failed", "all_failed", T0 + timedelta(seconds=100))
        cancelled = tasks.finish("cancelled", "cancelled_pending", T0 + timedelta(seconds=200))
        archived = tasks.finish("archived", "approved", T0 + timedelta(seconds=50), archive=True)
        late = tasks.finish("late", "approved", T0 + timedelta(seconds=1000))
        done = tasks.run("done", lifecycle("approved", T0 - timedelta(seconds=100), HOTKEYS))[-2]
        pending = tasks.create("pending", at=T0 - timedelta(seconds=100))
        assert done.status == "DONE"
        await commit(store, [approved, failed, cancelled, archived, late, done, pending])

        cutoff = T0 + timedelta(seconds=500)
        assert await store.tasks_to_archive(cutoff, 10) == [approved, failed, cancelled]
        assert await store.tasks_to_archive(cutoff, 2) == [approved, failed]
        assert cancelled.updated_at is not None
        assert await store.tasks_to_archive(cancelled.updated_at, 10) == [approved, failed]

    async def test_blob_in_use_by_another_task_that_is_not_archived(
        self, store: ReadModelStore
    ) -> None:
        shared, produced, old = digest("shared input"), digest("tts output"), digest("old")
        tasks = Tasks()
        first = tasks.create("first", at=T0, blobs=(shared,))
        second = tasks.create("second", at=T0, blobs=(shared,))
        tasks.create("speaker", at=T0)
        tasks.distribute("speaker", T0 + timedelta(seconds=1))
        audio = {"audio": {"digest": produced, "content_type": "audio/wav", "size": 4}}
        speaker = tasks.respond("speaker", HOTKEYS[0], T0 + timedelta(seconds=2), audio)
        tasks.create("gone", at=T0, blobs=(old,))
        gone = tasks.run(
            "gone",
            [
                CancelTask(reason="client cancelled", now=T0 + timedelta(seconds=1)),
                ArchiveTask(now=T0 + timedelta(days=1), blobs_deleted=(old,)),
            ],
        )[-1]
        await commit(store, [first, second, speaker, gone])

        assert await store.blob_in_use(shared, excluding_task="first")
        assert await store.blob_in_use(shared, excluding_task="nobody")
        assert await store.blob_in_use(produced, excluding_task="other")
        assert not await store.blob_in_use(produced, excluding_task="speaker")
        assert not await store.blob_in_use(old, excluding_task="other")
        assert not await store.blob_in_use(digest("never stored"), excluding_task="other")

        second_archived = tasks.run(
            "second",
            [
                CancelTask(reason="client cancelled", now=T0 + timedelta(seconds=1)),
                ArchiveTask(now=T0 + timedelta(days=1)),
            ],
        )[-1]
        await commit(store, [second_archived])
        assert not await store.blob_in_use(shared, excluding_task="first")
        assert await store.blob_in_use(shared, excluding_task="second")

    async def test_status_counts(self, store: ReadModelStore) -> None:
        tasks = Tasks()
        states = [
            tasks.create("p1", at=T0),
            tasks.create("p2", at=T0),
            tasks.finish("a1", "approved", T0),
            tasks.finish("c1", "cancelled_distributed", T0),
        ]
        tasks.create("d1", at=T0)
        states.append(tasks.distribute("d1", T0 + timedelta(seconds=1)))
        assert await store.status_counts() == {}
        await commit(store, states)
        assert await store.status_counts() == {
            "PENDING": 2,
            "DISTRIBUTED": 1,
            "APPROVED": 1,
            "CANCELLED": 1,
        }

    # -- upkeep -----------------------------------------------------------------

    async def test_reset_drops_every_read_model_and_checkpoint(self, store: ReadModelStore) -> None:
        tasks = Tasks()
        states = [tasks.finish("a", "approved", T0), tasks.create("p", at=T0)]
        await commit(store, states, counted("hk-a", "assigned", task_id="p"))
        await store.reset()
        assert await store.get_tasks(["a", "p"]) == {}
        assert await store.all_miners() == []
        assert await store.checkpoint(CONSUMER) is None
        assert await store.status_counts() == {}
        assert await store.tasks_in_status("PENDING", 10) == []
        assert await store.tasks_due(T0 + timedelta(days=1), 10) == []
        # And the store is usable again, from scratch.
        await commit(store, states[:1], checkpoint="1")
        assert await store.get_task("a") == states[0]
        assert await store.checkpoint(CONSUMER) == "1"

    async def test_check_passes_on_a_working_store(self, store: ReadModelStore) -> None:
        await store.check()

    async def test_a_commit_larger_than_a_transaction_is_complete(
        self, store: ReadModelStore
    ) -> None:
        tasks = Tasks()
        states = [tasks.create(f"t{i:04d}", at=T0 + timedelta(seconds=i)) for i in range(1100)]
        counts = [MinerCount(s.task_id, 1, f"hk-{i % 3}", "assigned") for i, s in enumerate(states)]
        checkpoint = await commit(store, states, counts)
        miners = [MinerStats(f"hk-{i}") for i in range(3)]
        for _ in range(len(states) // 3):
            miners = [m.on_assigned() for m in miners]
        miners[0] = miners[0].on_assigned()
        miners[1] = miners[1].on_assigned()
        assert await store.get_tasks([s.task_id for s in states]) == {s.task_id: s for s in states}
        assert await store.all_miners() == miners
        assert await store.checkpoint(CONSUMER) == checkpoint
        assert await store.status_counts() == {"PENDING": len(states)}
        oldest = await store.tasks_in_status("PENDING", 2)
        assert oldest == states[:2]

    # -- the projector over a real log ------------------------------------------

    async def test_projected_lifecycles_are_applied_exactly_once_under_redelivery(
        self, store: ReadModelStore, tmp_path: Path
    ) -> None:
        log = SqliteEventLog(tmp_path / "events.db")
        try:
            commands = EmbeddedCommands(log)
            scripts = {
                f"task-{ending}": lifecycle(ending, T0 + timedelta(minutes=i), HOTKEYS)
                for i, ending in enumerate(ENDINGS)
            }
            order = [task_id for _ in range(12) for task_id in scripts]
            for task_id, command in interleave(scripts, order):
                await commands.execute(task_id, command, actor="tests")

            projector = Projector(store)
            batches = [b async for b in log.subscribe(follow=False, batch_size=7)]
            for batch in batches:
                await projector.apply(batch)

            expected = {t: fold(t, await log.read_stream(t)) for t in scripts}
            assert await store.get_tasks(list(scripts)) == expected
            miners = await store.all_miners()
            assert {m.hotkey: counters(m) for m in miners} == miner_counts(expected.values())
            assert await store.checkpoint(CONSUMER) == batches[-1].checkpoint

            # Delivered again: the same batches, then overlapping ones of another size.
            for batch in batches:
                assert await projector.apply(batch) == []
            async for batch in log.subscribe(
                after=batches[2].checkpoint, follow=False, batch_size=5
            ):
                assert await projector.apply(batch) == []

            assert await store.get_tasks(list(scripts)) == expected
            assert await store.all_miners() == miners
        finally:
            await log.close()
