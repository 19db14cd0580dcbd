"""The event log contract against the embedded SQLite backend, plus what only it promises."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from audit.log_audit import audit_log
from events import Envelope, EventLog
from events.sqlite_log import SqliteEventLog
from tests.contract.event_log_contract import (
    FOLLOW_TIMEOUT,
    EventLogContract,
    chain,
    events_of,
    ids,
    read_all,
    take,
)

REPO = Path(__file__).resolve().parents[2]


class TestSqliteEventLog(EventLogContract):
    async def make_log(self, request: pytest.FixtureRequest) -> EventLog:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return SqliteEventLog(tmp_path / "events.db")

    async def reopen(self, log: EventLog) -> EventLog:
        assert isinstance(log, SqliteEventLog)
        await log.close()
        return SqliteEventLog(log.path)


@pytest.fixture
async def log(tmp_path: Path):
    log = SqliteEventLog(tmp_path / "events.db")
    try:
        yield log
    finally:
        await log.close()


async def test_the_log_order_is_the_order_appends_were_acknowledged(log: SqliteEventLog) -> None:
    """One database, one order: across tasks too (the contract only promises per task)."""
    acknowledged: list[Envelope] = []
    last: dict[str, Envelope] = {}
    for n in range(30):
        task_id = f"task-{n % 4}"
        events = chain(task_id, 1 + n % 2, after=last.get(task_id))
        await log.append(task_id, events[0].sequence - 1, events)
        last[task_id] = events[-1]
        acknowledged += events
    batches = await read_all(log, batch_size=7)
    assert ids(events_of(batches)) == ids(acknowledged)
    positions = [int(batch.checkpoint) for batch in batches]
    assert positions == sorted(set(positions))


async def test_pipelined_appends_to_one_stream_are_committed_in_order(
    log: SqliteEventLog,
) -> None:
    """Appends issued back to back (one group commit) may build on each other."""
    events = chain("task-1", 4)
    await asyncio.gather(*(log.append("task-1", n, [events[n]]) for n in range(4)))
    assert ids(await log.read_stream("task-1")) == ids(events)


async def test_another_process_sees_appends_by_polling(tmp_path: Path) -> None:
    writer = SqliteEventLog(tmp_path / "events.db")
    reader = SqliteEventLog(tmp_path / "events.db", poll_seconds=0.02)
    try:
        follower = asyncio.create_task(take(reader, 3))
        await asyncio.sleep(0.05)
        written = chain("task-1", 3)
        await writer.append("task-1", 0, written)
        assert ids(await asyncio.wait_for(follower, FOLLOW_TIMEOUT)) == ids(written)
    finally:
        await writer.close()
        await reader.close()


# -- a crash in the middle of appending ------------------------------------------

# Four writers create and cancel tasks through the EmbeddedCommands (so the log
# must audit clean), printing every append the log acknowledged.
CHILD = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregates import CancelTask, CreateTask
from events.sqlite_log import SqliteEventLog
from processors.commands import EmbeddedCommands

NOW = datetime(2025, 1, 1, tzinfo=UTC)


async def main(path):
    commands = EmbeddedCommands(SqliteEventLog(Path(path)))

    async def writer(w):
        for n in range(10**6):
            task_id = f"task-{w}-{n}"
            create = CreateTask(
                "tts", "normal", {"n": n}, "crash", NOW + timedelta(hours=1), 1, 30.0, NOW
            )
            for command in (create, CancelTask("done", NOW)):
                outcome = await commands.execute(task_id, command, actor="crash-test")
                print(task_id, outcome.events[-1].sequence, flush=True)

    await asyncio.gather(*(writer(w) for w in range(4)))


asyncio.run(main(sys.argv[1]))
"""


def test_every_acknowledged_append_survives_a_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, child.kill)
    watchdog.start()
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < 300:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
        os.kill(child.pid, signal.SIGKILL)
        rest, errors = child.communicate()
    finally:
        watchdog.cancel()
    assert child.returncode == -signal.SIGKILL, errors
    assert len(lines) >= 300, errors
    acknowledged = [line.split() for line in lines + rest.splitlines()]

    async def reopen_and_check() -> None:
        log = SqliteEventLog(path)
        try:
            for task_id, sequence in acknowledged:
                stream = await log.read_stream(task_id)
                assert len(stream) >= int(sequence), (task_id, sequence)
            report = await audit_log(log)
            assert report.clean, [str(v) for v in report.violations[:5]]
            assert report.events >= len(acknowledged)
        finally:
            await log.close()

    asyncio.run(reopen_and_check())
