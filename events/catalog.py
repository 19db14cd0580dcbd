"""Every fact a task's stream can hold: typed, frozen, named in the past tense."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskType = Literal["transcription", "tts", "summarization"]
Priority = Literal["low", "normal", "high", "critical"]

TASK_TYPES: tuple[TaskType, ...] = ("transcription", "tts", "summarization")
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "critical")
PRIORITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(PRIORITIES)}


class Event(BaseModel):
    """Base of every event payload; ``TYPE`` and ``VERSION`` name its schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class MinerAssignment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    hotkey: str
    deadline: datetime


class TaskCreated(Event):
    """A client's job was accepted. Version 2 renamed ``kind`` and added the miner settings."""

    TYPE = "TaskCreated"
    VERSION = 2
    task_type: TaskType
    priority: Priority
    input: dict[str, Any]
    client: str
    deadline: datetime
    miners_wanted: int = Field(ge=1)
    miner_timeout_seconds: float = Field(gt=0)
    idempotency_key: str | None = None
    blobs: tuple[str, ...] = ()


class TaskDistributed(Event):
    TYPE = "TaskDistributed"
    assignments: tuple[MinerAssignment, ...] = Field(min_length=1)


class MinerAssigned(Event):
    """A replacement miner took over a failed or timed-out one (failover)."""

    TYPE = "MinerAssigned"
    assignment: MinerAssignment
    replaces: str | None = None


class MinerResponded(Event):
    TYPE = "MinerResponded"
    hotkey: str
    result: dict[str, Any]
    latency_ms: float = Field(ge=0)


class MinerFailed(Event):
    TYPE = "MinerFailed"
    hotkey: str
    reason: str


class MinerTimedOut(Event):
    TYPE = "MinerTimedOut"
    hotkey: str


class TaskCompleted(Event):
    TYPE = "TaskCompleted"
    responded: tuple[str, ...]


class TaskEvaluated(Event):
    TYPE = "TaskEvaluated"
    validator: str
    scores: dict[str, float]
    rewards: dict[str, float]


class TaskApproved(Event):
    TYPE = "TaskApproved"
    miner_hotkey: str
    score: float
    result: dict[str, Any]


class TaskFailed(Event):
    TYPE = "TaskFailed"
    code: str
    message: str


class TaskCancelled(Event):
    TYPE = "TaskCancelled"
    reason: str


class TaskArchived(Event):
    """Retention removed the task's files; the log keeps every fact."""

    TYPE = "TaskArchived"
    blobs_deleted: tuple[str, ...] = ()


EVENT_CLASSES: tuple[type[Event], ...] = (
    TaskCreated,
    TaskDistributed,
    MinerAssigned,
    MinerResponded,
    MinerFailed,
    MinerTimedOut,
    TaskCompleted,
    TaskEvaluated,
    TaskApproved,
    TaskFailed,
    TaskCancelled,
    TaskArchived,
)
