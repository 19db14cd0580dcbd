"""A task's current state, and ``evolve``: how one event changes it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

from aggregates.errors import MinerAlreadyAssigned, MinerNotAssigned
from aggregates.transitions import START, MinerState, next_miner_state, next_status
from events import (
    Envelope,
    Event,
    MinerAssigned,
    MinerAssignment,
    MinerFailed,
    MinerResponded,
    MinerTimedOut,
    TaskApproved,
    TaskArchived,
    TaskCancelled,
    TaskCreated,
    TaskDistributed,
    TaskEvaluated,
    TaskFailed,
    parse_time,
    payload_of,
)


class MinerSlot(NamedTuple):
    hotkey: str
    state: MinerState
    assigned_at: datetime
    deadline: datetime
    latency_ms: float | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None
    replaces: str | None = None


class FirstResponse(NamedTuple):
    """The task's earliest accepted miner answer: shown to the client before it is scored."""

    hotkey: str
    latency_ms: float
    received_at: datetime
    result: dict[str, Any]


class TaskState(NamedTuple):
    """Immutable; a tuple underneath so that ``evolve`` can copy it cheaply."""

    task_id: str
    status: str = START
    version: int = 0
    task_type: str = ""
    priority: str = "normal"
    client: str = ""
    input: dict[str, Any] | None = None
    deadline: datetime | None = None
    miners_wanted: int = 0
    miner_timeout_seconds: float = 0.0
    idempotency_key: str | None = None
    blobs: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    miners: tuple[MinerSlot, ...] = ()
    validator: str | None = None
    scores: dict[str, float] | None = None
    rewards: dict[str, float] | None = None
    result: dict[str, Any] | None = None
    winner: str | None = None
    error: dict[str, str] | None = None
    archived: bool = False
    first_response: FirstResponse | None = None

    @property
    def exists(self) -> bool:
        return self.status != START

    def slot(self, hotkey: str) -> MinerSlot | None:
        for slot in self.miners:
            if slot.hotkey == hotkey:
                return slot
        return None

    def assigned(self) -> tuple[MinerSlot, ...]:
        return tuple(slot for slot in self.miners if slot.state == "assigned")

    def responded(self) -> tuple[MinerSlot, ...]:
        return tuple(slot for slot in self.miners if slot.state == "responded")

    def next_deadline(self) -> datetime | None:
        """The earliest moment the deadline keeper must look at this task, if open."""
        if self.status == "PENDING":
            return self.deadline
        if self.status != "DISTRIBUTED":
            return None
        moments = [slot.deadline for slot in self.assigned()]
        if self.deadline is not None:
            moments.append(self.deadline)
        return min(moments) if moments else None


_SLOT_FIELD = {name: index for index, name in enumerate(MinerSlot._fields)}


def _settle(
    state: TaskState, hotkey: str, event_type: str, **changes: Any
) -> tuple[MinerSlot, ...]:
    slots = list(state.miners)
    for index, slot in enumerate(slots):
        if slot.hotkey == hotkey:
            values = list(slot)  # as slot._replace(state=..., **changes), by place
            values[_SLOT_FIELD["state"]] = next_miner_state(slot.state, event_type)
            for name, value in changes.items():
                values[_SLOT_FIELD[name]] = value
            slots[index] = _new_slot_tuple(MinerSlot, values)
            return tuple(slots)
    raise MinerNotAssigned(f"miner {hotkey} is not assigned to task {state.task_id}")


def _new_slot(assignment: MinerAssignment, at: datetime, replaces: str | None) -> MinerSlot:
    return MinerSlot(assignment.hotkey, "assigned", at, assignment.deadline, replaces=replaces)


def _changes(state: TaskState, event: Event, at: datetime) -> dict[str, Any]:
    """What one event changes in the state, besides status, version and time."""
    match event:
        case TaskCreated():
            return {
                "task_type": event.task_type,
                "priority": event.priority,
                "client": event.client,
                "input": event.input,
                "deadline": event.deadline,
                "miners_wanted": event.miners_wanted,
                "miner_timeout_seconds": event.miner_timeout_seconds,
                "idempotency_key": event.idempotency_key,
                "blobs": event.blobs,
                "created_at": at,
            }
        case TaskDistributed():
            slots = tuple(_new_slot(a, at, None) for a in event.assignments)
            return {"miners": state.miners + slots}
        case MinerAssigned():
            if state.slot(event.assignment.hotkey) is not None:
                raise MinerAlreadyAssigned(f"miner {event.assignment.hotkey} assigned twice")
            return {"miners": (*state.miners, _new_slot(event.assignment, at, event.replaces))}
        case MinerResponded():
            changes: dict[str, Any] = {
                "miners": _settle(
                    state,
                    event.hotkey,
                    event.TYPE,
                    result=event.result,
                    latency_ms=event.latency_ms,
                )
            }
            if state.first_response is None:
                changes["first_response"] = FirstResponse(
                    event.hotkey, event.latency_ms, at, event.result
                )
            return changes
        case MinerFailed():
            return {"miners": _settle(state, event.hotkey, event.TYPE, reason=event.reason)}
        case MinerTimedOut():
            return {"miners": _settle(state, event.hotkey, event.TYPE, reason="timed out")}
        case TaskEvaluated():
            return {"validator": event.validator, "scores": event.scores, "rewards": event.rewards}
        case TaskApproved():
            return {"result": event.result, "winner": event.miner_hotkey}
        case TaskFailed():
            return {"error": {"code": event.code, "message": event.message}}
        case TaskCancelled():
            return {"error": {"code": "cancelled", "message": event.reason}}
        case TaskArchived():
            return {"archived": True}
    return {}


_FIELD = {name: index for index, name in enumerate(TaskState._fields)}
_STATUS, _VERSION, _UPDATED_AT = _FIELD["status"], _FIELD["version"], _FIELD["updated_at"]


# ``NamedTuple._make`` without its method call and length check: every value
# list here is a copy of a whole state or slot, so it always has every field.
_new_state: Callable[[type[TaskState], list[Any]], TaskState] = tuple.__new__
_new_slot_tuple: Callable[[type[MinerSlot], list[Any]], MinerSlot] = tuple.__new__


def evolve(state: TaskState, event: Event, at: datetime) -> TaskState:
    """Apply one event. Raises IllegalTransition for an event the table does not allow."""
    values = list(state)
    values[_STATUS] = next_status(state.status, event.TYPE)
    values[_VERSION] = state.version + 1
    values[_UPDATED_AT] = at
    # NamedTuple._replace looks every field up by name; this is the same, by place.
    for name, value in _changes(state, event, at).items():
        values[_FIELD[name]] = value
    return _new_state(TaskState, values)


def fold(task_id: str, envelopes: Iterable[Envelope]) -> TaskState:
    """Replay a stream from its first event."""
    state = TaskState(task_id)
    for envelope in envelopes:
        state = evolve(state, payload_of(envelope), parse_time(envelope.occurred_at))
    return state
