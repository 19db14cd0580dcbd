"""What can be asked of a task. Time and ids come in with the command: the decider has no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import MinerAssignment, Priority, TaskType


@dataclass(frozen=True, slots=True)
class CreateTask:
    task_type: TaskType
    priority: Priority
    input: dict[str, Any]
    client: str
    deadline: datetime
    miners_wanted: int
    miner_timeout_seconds: float
    now: datetime
    idempotency_key: str | None = None
    blobs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DistributeTask:
    assignments: tuple[MinerAssignment, ...]
    now: datetime


@dataclass(frozen=True, slots=True)
class RecordResponse:
    hotkey: str
    result: dict[str, Any]
    latency_ms: float
    now: datetime


@dataclass(frozen=True, slots=True)
class RecordFailure:
    hotkey: str
    reason: str
    now: datetime
    replacement: MinerAssignment | None = None


@dataclass(frozen=True, slots=True)
class CheckDeadlines:
    now: datetime
    replacements: tuple[MinerAssignment, ...] = ()


@dataclass(frozen=True, slots=True)
class Evaluate:
    validator: str
    scores: dict[str, float]
    now: datetime


@dataclass(frozen=True, slots=True)
class CancelTask:
    reason: str
    now: datetime


@dataclass(frozen=True, slots=True)
class ArchiveTask:
    now: datetime
    blobs_deleted: tuple[str, ...] = field(default=())


Command = (
    CreateTask
    | DistributeTask
    | RecordResponse
    | RecordFailure
    | CheckDeadlines
    | Evaluate
    | CancelTask
    | ArchiveTask
)
