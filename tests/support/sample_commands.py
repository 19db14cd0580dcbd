"""Commands for one summarization task at a fixed time, for the embedded commands tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregates import CreateTask, DistributeTask
from events import MinerAssignment

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def create(n: int = 0) -> CreateTask:
    return CreateTask(
        task_type="summarization",
        priority="normal",
        input={"text": f"Text {n}."},
        client="c",
        deadline=NOW + timedelta(minutes=5),
        miners_wanted=1,
        miner_timeout_seconds=30.0,
        now=NOW,
    )


def distribute(hotkey: str = "m1") -> DistributeTask:
    return DistributeTask(
        (MinerAssignment(hotkey=hotkey, deadline=NOW + timedelta(seconds=30)),), NOW
    )
