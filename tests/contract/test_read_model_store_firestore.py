from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.api_core.exceptions import Aborted

# Before the import, so that pytest rewrites the contract's asserts too.
pytest.register_assert_rewrite("tests.contract.read_model_store_contract")

from events.sqlite_log import SqliteEventLog  # noqa: E402
from processors.commands import EmbeddedCommands  # noqa: E402
from projections import MinerStats, Projector, ReadModelStore  # noqa: E402
from projections import firestore_store as module  # noqa: E402
from projections.firestore_store import FirestoreReadModelStore, task_document  # noqa: E402
from projections.sqlite_store import SqliteReadModelStore  # noqa: E402
from projections.task_blobs import task_blobs  # noqa: E402
from tests.contract.read_model_store_contract import (  # noqa: E402
    HOTKEYS,
    T0,
    ReadModelStoreContract,
    Tasks,
    commit,
    counted,
    digest,
)
from tests.support.histories import ENDINGS, interleave, lifecycle  # noqa: E402

if TYPE_CHECKING:
    from tests.support.firestore_emulator import FirestoreEmulator

# Registered as a plugin, not imported, so pytest can rewrite its asserts.
PROJECT = "taskledger-test"
pytestmark = pytest.mark.firestore


class TestFirestoreReadModelStore(ReadModelStoreContract):
    async def make_store(self, request: pytest.FixtureRequest) -> ReadModelStore:
        emulator: FirestoreEmulator = request.getfixturevalue("firestore_emulator")
        emulator.reset(PROJECT)
        return FirestoreReadModelStore(emulator.client(PROJECT))


StoreFactory = Callable[..., FirestoreReadModelStore]


@pytest.fixture
async def new_store(firestore_emulator: FirestoreEmulator) -> AsyncIterator[StoreFactory]:
    """Stores on an emptied emulator, each on its own client (as separate processes would be)."""
    firestore_emulator.reset(PROJECT)
    made: list[FirestoreReadModelStore] = []

    def make(**kwargs: Any) -> FirestoreReadModelStore:
        store = FirestoreReadModelStore(firestore_emulator.client(PROJECT), **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


async def _history(log: SqliteEventLog, tasks: int) -> list[str]:
    """Whole lifecycles of every ending, interleaved, appended through the command path."""
    commands = EmbeddedCommands(log)
    endings = list(ENDINGS)
    scripts = {
        f"task-{i:03d}": lifecycle(endings[i % len(endings)], T0 + timedelta(minutes=i), HOTKEYS)
        for i in range(tasks)
    }
    order = [task_id for _ in range(12) for task_id in scripts]
    for task_id, command in interleave(scripts, order):
        await commands.execute(task_id, command, actor="tests")
    return list(scripts)


async def _project(store: ReadModelStore, log: SqliteEventLog, batch_size: int) -> None:
    projector = Projector(store)
    after = await projector.checkpoint()
    async for batch in log.subscribe(after=after, follow=False, batch_size=batch_size):
        await projector.apply(batch)


async def _snapshot(store: ReadModelStore, task_ids: list[str]) -> tuple[Any, ...]:
    return (
        await store.get_tasks(task_ids),
        await store.all_miners(),
        await store.status_counts(),
    )


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    log = SqliteEventLog(tmp_path / "events.db")
    yield log
    await log.close()


@pytest.fixture
async def reference(tmp_path: Path) -> AsyncIterator[SqliteReadModelStore]:
    """The embedded store, fed without faults: what the Firestore store must end up equal to."""
    store = SqliteReadModelStore(tmp_path / "reference.db")
    yield store
    await store.close()


def _crash_before(
    monkeypatch: pytest.MonkeyPatch,
    store: FirestoreReadModelStore,
    when: Callable[[module._Chunk], bool],
) -> list[module._Chunk]:
    """Make the first transaction that ``when`` picks fail, as if the process died there."""
    run_chunk = store._run_chunk
    crashed: list[module._Chunk] = []

    async def failing(chunk: module._Chunk, *args: Any) -> None:
        if not crashed and when(chunk):
            crashed.append(chunk)
            raise ConnectionAbortedError("the projector died between two transactions")
        await run_chunk(chunk, *args)

    monkeypatch.setattr(store, "_run_chunk", failing)
    return crashed


@pytest.mark.parametrize(
    ("crash_at", "batch_size_after"),
    [("last", 400), ("last", 7), ("second", 400)],
    ids=["before-last-same-batches", "before-last-smaller-batches", "before-second"],
)
async def test_a_crash_between_the_transactions_of_a_commit_counts_every_event_once(
    new_store: StoreFactory,
    log: SqliteEventLog,
    reference: SqliteReadModelStore,
    monkeypatch: pytest.MonkeyPatch,
    crash_at: str,
    batch_size_after: int,
) -> None:
    # Small transactions, so that a batch of a few dozen tasks needs several.
    monkeypatch.setattr(module, "MAX_WRITES", 12)
    task_ids = await _history(log, 27)
    await _project(reference, log, batch_size=400)

    store = new_store()
    chunks: list[module._Chunk] = []

    def pick(chunk: module._Chunk) -> bool:
        chunks.append(chunk)
        return chunk.last if crash_at == "last" else len(chunks) == 2

    crashed = _crash_before(monkeypatch, store, pick)
    with pytest.raises(ConnectionAbortedError):
        await _project(store, log, batch_size=400)
    assert crashed and crashed[0].commit_id is not None
    assert await store.checkpoint("projections") is None
    # What the projector folds on is still the state before the unfinished commit.
    assert await store.get_tasks(task_ids) == {}
    assert await store.get_miners(list(HOTKEYS)) == {}

    restarted = new_store()  # a new process: nothing remembered
    await _project(restarted, log, batch_size=batch_size_after)
    assert await _snapshot(restarted, task_ids) == await _snapshot(reference, task_ids)
    assert await restarted.checkpoint("projections") == await reference.checkpoint("projections")


async def test_a_commit_that_crashed_halfway_is_rolled_back_for_readers_until_redone(
    new_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "MAX_WRITES", 4)
    tasks = Tasks()
    created = {f"t{i}": tasks.create(f"t{i}", at=T0) for i in range(5)}
    store = new_store()
    await commit(store, list(created.values()), counted("hk-a", "assigned", task_id="t0"))
    distributed = {t: tasks.distribute(t, T0 + timedelta(seconds=1)) for t in created}
    busier = MinerStats("hk-a").on_assigned().on_assigned()
    again = counted("hk-a", "assigned", task_id="t0", after=1)

    _crash_before(monkeypatch, store, lambda chunk: chunk.last)
    with pytest.raises(ConnectionAbortedError):
        await commit(store, list(distributed.values()), again)

    reader = new_store()
    assert await reader.get_tasks(list(created)) == created
    assert await reader.get_miners(["hk-a"]) == {"hk-a": MinerStats("hk-a").on_assigned()}
    # The queries are not held back: they already see the staged states.
    assert await reader.status_counts() == {"DISTRIBUTED": 4, "PENDING": 1}

    await commit(reader, list(distributed.values()), again)
    assert await reader.get_tasks(list(created)) == distributed
    assert await reader.get_miners(["hk-a"]) == {"hk-a": busier}
    assert await new_store().get_tasks(list(created)) == distributed


async def _project_supervised(store: ReadModelStore, log: SqliteEventLog, batch_size: int) -> int:
    """Like the runtime's supervisor: a projector that fails starts again from its checkpoint."""
    for restarts in range(20):
        try:
            await _project(store, log, batch_size)
        except (ValueError, Aborted):  # a transaction that lost too many lock contests
            continue
        return restarts
    raise AssertionError("the projector never got through")


async def test_projectors_racing_over_the_same_batches_count_every_event_once(
    new_store: StoreFactory, log: SqliteEventLog, reference: SqliteReadModelStore
) -> None:
    task_ids = await _history(log, 18)
    await _project(reference, log, batch_size=25)
    stores = [new_store() for _ in range(2)]
    await asyncio.gather(*(_project_supervised(store, log, batch_size=25) for store in stores))
    expected = await _snapshot(reference, task_ids)
    for store in stores:
        assert await _snapshot(store, task_ids) == expected


async def test_documents_are_laid_out_for_the_queries(new_store: StoreFactory) -> None:
    tasks = Tasks()
    tasks.create("speaker", at=T0, blobs=(digest("input"),))
    tasks.distribute("speaker", T0 + timedelta(seconds=1))
    audio = {"audio": {"digest": digest("output"), "content_type": "audio/wav", "size": 4}}
    state = tasks.respond("speaker", HOTKEYS[0], T0 + timedelta(seconds=2), audio)
    stats = MinerStats("hk-a").on_assigned().on_responded(80.0)
    store = new_store()
    counts = counted("hk-a", "assigned", ("responded", 80.0), task_id="speaker")
    await commit(store, [state], counts, checkpoint="17")

    task = (await store.tasks.document("speaker").get()).to_dict()
    assert task == {
        "state": task_document(state)["state"],
        "client": "client-1",
        "status": "DISTRIBUTED",
        "priority_rank": 1,
        "created_at": "2025-01-01T00:00:00.000000Z",
        "updated_at": "2025-01-01T00:00:02.000000Z",
        "next_deadline": "2025-01-01T00:00:31.000000Z",
        "archived": False,
        "version": 3,
        "blobs": [digest("input"), digest("output")],
    }
    assert task["blobs"] == task_blobs(state)
    miner = (await store.miners.document("hk-a").get()).to_dict()
    assert miner == stats.to_doc()
    checkpoint = (await store.checkpoints.document("projections").get()).to_dict()
    assert checkpoint == {"checkpoint": "17"}


async def test_a_prefix_keeps_two_stores_apart(new_store: StoreFactory) -> None:
    tasks = Tasks()
    blue, green = new_store(prefix="blue_"), new_store(prefix="green_")
    state = tasks.create("t", at=T0)
    await commit(blue, [state], counted("hk-a", "assigned"), checkpoint="5")
    assert await green.get_task("t") is None
    assert await green.checkpoint("projections") is None
    assert await green.all_miners() == []
    await green.reset()
    assert await blue.get_task("t") == state
    assert blue.tasks.id == "blue_tasks"


async def test_check_fails_fast_when_the_service_is_unreachable(
    firestore_emulator: FirestoreEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bound but not listening: connections are refused, and no one else gets the port.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setattr(firestore_emulator, "port", closed.getsockname()[1])
        store = FirestoreReadModelStore(firestore_emulator.client(PROJECT))
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - whichever error gRPC gives up with
            await store.check()
        await store.close()
    assert time.monotonic() - started < 10


def test_the_emulator_is_not_reached_through_the_environment() -> None:
    assert "FIRESTORE_EMULATOR_HOST" not in os.environ


def test_a_missing_emulator_is_an_error_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support import firestore_emulator as emulator_module

    monkeypatch.setattr(emulator_module, "EMULATOR_SCRIPT", tmp_path / "absent" / "script")
    with pytest.raises(emulator_module.FirestoreEmulatorError, match="emulator is missing"):
        emulator_module.FirestoreEmulator.start(tmp_path)
