"""Every fact a task's stream can hold: typed, frozen, named in the past tense."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

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


Model = TypeVar("Model", bound=BaseModel)
_set_slot = object.__setattr__


def trusted(cls: type[Model], fields: dict[str, Any]) -> Model:
    """``cls(**fields)`` without validating ``fields`` again: what ``model_construct`` builds.

    Only for values already of their declared types, every field given (the decider
    builds its events from commands it has checked): nothing is coerced, so a float
    field given an int would encode differently. Takes ``fields`` as the model's own.
    """
    model = cls.__new__(cls)
    _set_slot(model, "__dict__", fields)
    _set_slot(model, "__pydantic_fields_set__", set(fields))
    _set_slot(model, "__pydantic_extra__", None)
    _set_slot(model, "__pydantic_private__", None)
    return model


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
