"""Concurrent callers of ``EmbeddedCommands.execute`` share batches, each with its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from aggregates import CancelTask, TaskAlreadyExists
from events import Envelope
from events.sqlite_log import SqliteEventLog
from processors.commands import EmbeddedCommands
from tests.support.sample_commands import NOW, create, distribute


class CountingLog(SqliteEventLog):
    """The SQLite log, counting how many batched appends reach it."""

    appends = 0

    async def append_many(
        self, appends: Sequence[tuple[str, int, Sequence[Envelope]]]
    ) -> list[Exception | None]:
        self.appends += 1
        return await super().append_many(appends)


def task(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


async def test_concurrent_commands_are_appended_together(tmp_path: Path) -> None:
    log = CountingLog(tmp_path / "events.db")
    commands = EmbeddedCommands(log)
    try:
        outcomes = await asyncio.gather(
            *(commands.execute(task(n), create(n), actor="c") for n in range(100))
        )
        assert [o.state.version for o in outcomes] == [1] * 100
        assert {o.events[0].task_id for o in outcomes} == {task(n) for n in range(100)}
        assert log.appends <= 2  # one for the first command, one for all that queued behind
        assert await log.count() == 100
    finally:
        await log.close()


async def test_each_caller_gets_its_own_answer(tmp_path: Path) -> None:
    log = CountingLog(tmp_path / "events.db")
    commands = EmbeddedCommands(log)
    try:
        await commands.execute(task(1), create(1), actor="c")
        results = await asyncio.gather(
            commands.execute(task(1), create(1), actor="c"),  # refused: exists
            commands.execute(task(1), distribute(), actor="d"),
            commands.execute(task(1), CancelTask("enough", NOW), actor="c"),
            commands.execute(task(2), create(2), actor="c"),
            return_exceptions=True,
        )
        assert isinstance(results[0], TaskAlreadyExists)
        distributed, cancelled, other = results[1:]
        assert not isinstance(distributed, BaseException)
        assert not isinstance(cancelled, BaseException)
        assert not isinstance(other, BaseException)
        # Same task: decided in the order they came, each on the state before it.
        assert distributed.state.status == "DISTRIBUTED"
        assert (cancelled.state.status, cancelled.state.version) == ("CANCELLED", 3)
        assert other.state.version == 1
        assert [e.sequence for e in await log.read_stream(task(1))] == [1, 2, 3]
    finally:
        await log.close()
