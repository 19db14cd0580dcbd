"""The task lifecycle as data: used by the decider, the audit, the docs and the tests."""

from __future__ import annotations

from typing import Final, Literal

from aggregates.errors import IllegalTransition

Status = Literal["PENDING", "DISTRIBUTED", "DONE", "APPROVED", "FAILED", "CANCELLED"]
MinerState = Literal["assigned", "responded", "failed", "timed_out"]

# The state a stream is in before its first event; not a status a task can have.
START: Final = "START"

STATUSES: Final[tuple[Status, ...]] = (
    "PENDING",
    "DISTRIBUTED",
    "DONE",
    "APPROVED",
    "FAILED",
    "CANCELLED",
)
TERMINAL: Final[frozenset[str]] = frozenset({"APPROVED", "FAILED", "CANCELLED"})
OPEN: Final[frozenset[str]] = frozenset({"PENDING", "DISTRIBUTED"})

# (status before, event type) -> status after. Anything not listed is illegal.
TRANSITIONS: Final[dict[tuple[str, str], Status]] = {
    (START, "TaskCreated"): "PENDING",
    ("PENDING", "TaskDistributed"): "DISTRIBUTED",
    ("PENDING", "TaskCancelled"): "CANCELLED",
    ("PENDING", "TaskFailed"): "FAILED",
    ("DISTRIBUTED", "MinerResponded"): "DISTRIBUTED",
    ("DISTRIBUTED", "MinerFailed"): "DISTRIBUTED",
    ("DISTRIBUTED", "MinerTimedOut"): "DISTRIBUTED",
    ("DISTRIBUTED", "MinerAssigned"): "DISTRIBUTED",
    ("DISTRIBUTED", "TaskCompleted"): "DONE",
    ("DISTRIBUTED", "TaskFailed"): "FAILED",
    ("DISTRIBUTED", "TaskCancelled"): "CANCELLED",
    ("DONE", "TaskEvaluated"): "DONE",
    ("DONE", "TaskApproved"): "APPROVED",
    ("DONE", "TaskFailed"): "FAILED",
    ("APPROVED", "TaskArchived"): "APPROVED",
    ("FAILED", "TaskArchived"): "FAILED",
    ("CANCELLED", "TaskArchived"): "CANCELLED",
}

# Each assigned miner's own small lifecycle inside DISTRIBUTED.
MINER_TRANSITIONS: Final[dict[tuple[str, str], MinerState]] = {
    ("assigned", "MinerResponded"): "responded",
    ("assigned", "MinerFailed"): "failed",
    ("assigned", "MinerTimedOut"): "timed_out",
}


def next_status(current: str, event_type: str) -> Status:
    after = TRANSITIONS.get((current, event_type))
    if after is None:
        raise IllegalTransition(f"{event_type} is not allowed in {current}")
    return after


def next_miner_state(current: str, event_type: str) -> MinerState:
    after = MINER_TRANSITIONS.get((current, event_type))
    if after is None:
        raise IllegalTransition(f"{event_type} is not allowed for a miner that is {current}")
    return after
