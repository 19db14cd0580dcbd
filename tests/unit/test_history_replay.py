"""Old histories must still replay: a checked-in log with v1 events audits, folds and projects.

``tests/fixtures/v1-log.db`` was written by ``tests/fixtures/make_v1_log.py``; see
its docstring for what is inside. Every test works on a copy.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from aggregates import ArchiveTask, Evaluate, RecordResponse, fold
from audit.log_audit import audit_log
from events import TaskCreated, payload_of
from events.sqlite_log import SqliteEventLog
from processors.commands import EmbeddedCommands
from projections import Projector, rebuild
from projections.sqlite_store import SqliteReadModelStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE = FIXTURES / "v1-log.db"

# What the recorded histories came to, as the version that wrote them decided.
EXPECTED = {
    "v1-approved-archived": ("APPROVED", True),
    "v1-failover-approved": ("APPROVED", False),
    "v1-all-timed-out": ("FAILED", False),
    "v1-cancelled-pending": ("CANCELLED", True),
    "v1-in-flight": ("DISTRIBUTED", False),
    "v2-approved": ("APPROVED", True),
    "v2-rejected": ("FAILED", False),
    "v2-expired-pending": ("FAILED", False),
    "v2-cancelled-distributed": ("CANCELLED", False),
}
V1_TASKS = [task_id for task_id in EXPECTED if task_id.startswith("v1-")]


@pytest.fixture
async def log(tmp_path: Path):
    copy = tmp_path / "events.db"
    shutil.copyfile(FIXTURE, copy)
    log = SqliteEventLog(copy)
    try:
        yield log
    finally:
        await log.close()


def test_the_fixture_stays_small_and_self_contained() -> None:
    assert FIXTURE.stat().st_size < 100_000
    assert not Path(f"{FIXTURE}-wal").exists()


async def test_the_fixture_holds_v1_events_in_the_old_shape(log: SqliteEventLog) -> None:
    for task_id in V1_TASKS:
        first = (await log.read_stream(task_id))[0]
        assert (first.type, first.version) == ("TaskCreated", 1)
        assert "kind" in first.data and "task_type" not in first.data
        assert "miners_wanted" not in first.data
    v2_first = (await log.read_stream("v2-approved"))[0]
    assert (v2_first.type, v2_first.version) == ("TaskCreated", TaskCreated.VERSION)


async def test_the_old_log_audits_clean(log: SqliteEventLog) -> None:
    report = await audit_log(log)
    assert report.clean, [str(v) for v in report.violations]
    assert report.tasks == len(EXPECTED)
    assert report.events == await log.count()


async def test_every_stream_folds_to_the_status_it_ended_in(log: SqliteEventLog) -> None:
    assert {head.task_id for head in await log.stream_heads()} == set(EXPECTED)
    for task_id, (status, archived) in EXPECTED.items():
        state = fold(task_id, await log.read_stream(task_id))
        assert (state.status, state.archived) == (status, archived), task_id


async def test_v1_tasks_read_with_the_settings_v1_ran_with(log: SqliteEventLog) -> None:
    for task_id in V1_TASKS:
        stream = await log.read_stream(task_id)
        created = payload_of(stream[0])
        assert isinstance(created, TaskCreated)
        state = fold(task_id, stream)
        assert state.task_type == stream[0].data["kind"] == created.task_type
        assert (state.miners_wanted, state.miner_timeout_seconds) == (3, 30.0)
        assert state.idempotency_key == stream[0].data["idempotency_key"]
    failover = fold("v1-failover-approved", await log.read_stream("v1-failover-approved"))
    assert [slot.state for slot in failover.miners].count("responded") == 3
    assert failover.winner is not None and failover.result is not None


async def test_read_models_rebuild_from_the_old_log(tmp_path: Path, log: SqliteEventLog) -> None:
    store = SqliteReadModelStore(tmp_path / "read.db")
    try:
        applied = await rebuild(log, Projector(store))
        assert applied == await log.count()
        folded = {task_id: fold(task_id, await log.read_stream(task_id)) for task_id in EXPECTED}
        assert await store.get_tasks(list(EXPECTED)) == folded
        assert await store.status_counts() == Counter(status for status, _ in EXPECTED.values())
        miners = await store.all_miners()
        slots = [slot for state in folded.values() for slot in state.miners]
        assert sum(m.assigned for m in miners) == len(slots)
        assert sum(m.in_flight for m in miners) == sum(s.state == "assigned" for s in slots)
        assert sum(m.responded for m in miners) == sum(s.state == "responded" for s in slots)
    finally:
        await store.close()


async def test_new_code_continues_an_old_history(log: SqliteEventLog) -> None:
    commands = EmbeddedCommands(log)
    in_flight = await commands.load("v1-in-flight")
    assert in_flight.updated_at is not None
    later = in_flight.updated_at + timedelta(seconds=5)
    for slot in in_flight.assigned():
        await commands.execute(
            "v1-in-flight", RecordResponse(slot.hotkey, {"audio": "x"}, 900.0, later), actor="t"
        )
    responded = [slot.hotkey for slot in (await commands.load("v1-in-flight")).responded()]
    assert len(responded) == 3
    done = await commands.execute(
        "v1-in-flight", Evaluate("5Fvalidator-one", {responded[-1]: 1.0}, later), actor="t"
    )
    assert (done.state.status, done.state.winner) == ("APPROVED", responded[-1])
    archived = await commands.execute(
        "v1-all-timed-out", ArchiveTask(later, ("sha256:old",)), actor="retention"
    )
    assert archived.state.archived and archived.state.status == "FAILED"
    report = await audit_log(log)
    assert report.clean, [str(v) for v in report.violations]


def test_the_script_still_writes_the_v1_events_of_the_fixture(tmp_path: Path) -> None:
    """The generator stays runnable and its hand-written v1 events match the file byte for byte.

    Only those are compared: everything after a task's first event is what the decider
    decided when the file was written, and a later decider may rightly decide otherwise.
    The checked-in file stays the record either way.
    """
    out = tmp_path / "again.db"
    subprocess.run(
        [sys.executable, str(FIXTURES / "make_v1_log.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )

    def v1_rows(path: Path) -> dict[str, tuple[object, ...]]:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = connection.execute(
                "SELECT task_id, sequence, body, hash FROM events WHERE type = 'TaskCreated'"
            ).fetchall()
        finally:
            connection.close()
        return {row[0]: row for row in found if b'"version":1' in row[2]}

    recorded = v1_rows(FIXTURE)
    assert set(recorded) == set(V1_TASKS)
    assert v1_rows(out) == recorded
