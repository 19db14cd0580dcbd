"""EmbeddedCommands when another process writes the same task (two of them, one log file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregates import (
    CancelTask,
    CheckDeadlines,
    CreateTask,
    DistributeTask,
    Evaluate,
    IllegalTransition,
    RecordResponse,
)
from events import MinerAssignment
from events.sqlite_log import SqliteEventLog
from processors.commands import EmbeddedCommands

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TASK = "00000000-0000-4000-8000-000000000001"


def create() -> CreateTask:
    return CreateTask(
        task_type="summarization",
        priority="normal",
        input={"text": "One. Two."},
        client="c",
        deadline=NOW + timedelta(minutes=5),
        miners_wanted=1,
        miner_timeout_seconds=30.0,
        now=NOW,
    )


async def test_commands_with_a_stale_head_decide_on_the_log(tmp_path: Path) -> None:
    edge_log = SqliteEventLog(tmp_path / "events.db")
    processors_log = SqliteEventLog(tmp_path / "events.db")
    edge, processors = EmbeddedCommands(edge_log), EmbeddedCommands(processors_log)
    try:
        await edge.execute(TASK, create(), actor="c")  # the edge now caches version 1
        assignment = MinerAssignment(hotkey="m1", deadline=NOW + timedelta(seconds=30))
        await processors.execute(TASK, DistributeTask((assignment,), NOW), actor="dispatcher")
        await processors.execute(
            TASK, RecordResponse("m1", {"summary": "One."}, 5.0, NOW), actor="m1"
        )
        # Decided on the cached head this would be refused: the task is DONE, not PENDING.
        outcome = await edge.execute(TASK, Evaluate("v", {"m1": 1.0}, NOW), actor="v")
        assert outcome.state.status == "APPROVED"
        assert [e.type for e in outcome.events] == ["TaskEvaluated", "TaskApproved"]
        # A refusal that holds on the log is still a refusal.
        with pytest.raises(IllegalTransition):
            await processors.execute(TASK, CancelTask("too late", NOW), actor="c")
    finally:
        await edge_log.close()
        await processors_log.close()


async def test_a_no_op_on_a_stale_head_is_checked_against_the_log(tmp_path: Path) -> None:
    first_log = SqliteEventLog(tmp_path / "events.db")
    second_log = SqliteEventLog(tmp_path / "events.db")
    first, second = EmbeddedCommands(first_log), EmbeddedCommands(second_log)
    try:
        await first.execute(TASK, create(), actor="c")
        assignment = MinerAssignment(hotkey="m1", deadline=NOW + timedelta(seconds=1))
        await second.execute(TASK, DistributeTask((assignment,), NOW), actor="dispatcher")
        # The first one's head says PENDING with no deadline due; the log says m1 is late.
        later = NOW + timedelta(seconds=2)
        outcome = await first.execute(TASK, CheckDeadlines(later), actor="deadline-keeper")
        assert [e.type for e in outcome.events] == ["MinerTimedOut", "TaskFailed"]
    finally:
        await first_log.close()
        await second_log.close()
