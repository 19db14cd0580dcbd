"""``decide(state, command) -> events``: the whole task lifecycle, as a pure function."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from aggregates.commands import (
    ArchiveTask,
    CancelTask,
    CheckDeadlines,
    Command,
    CreateTask,
    DistributeTask,
    Evaluate,
    RecordFailure,
    RecordResponse,
)
from aggregates.errors import (
    AlreadyAnswered,
    IllegalTransition,
    InvalidCommand,
    MinerAlreadyAssigned,
    MinerNotAssigned,
    TaskAlreadyExists,
    TaskNotFound,
)
from aggregates.state import MinerSlot, TaskState, evolve
from aggregates.transitions import OPEN, TERMINAL
from events import (
    PRIORITIES,
    TASK_TYPES,
    Event,
    MinerAssigned,
    MinerAssignment,
    MinerFailed,
    MinerResponded,
    MinerTimedOut,
    TaskApproved,
    TaskArchived,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskDistributed,
    TaskEvaluated,
    TaskFailed,
    trusted,
)


class Decision(NamedTuple):
    """A command's events, and the state they leave, each evolved at the command's ``now``."""

    events: list[Event]
    state: TaskState


def decide(state: TaskState, command: Command) -> list[Event]:
    """The events that ``command`` causes in ``state``; raises a DomainError to refuse it."""
    return decide_evolved(state, command).events


def decide_evolved(state: TaskState, command: Command) -> Decision:
    """:func:`decide`, and the state after its events.

    Settling a task needs the state after the miner's event; this returns that
    work instead of having the caller evolve the same events again.
    """
    if isinstance(command, CreateTask):
        return _evolved(state, _create(state, command), command.now)
    if not state.exists:
        raise TaskNotFound(f"task {state.task_id} does not exist")
    match command:
        case DistributeTask():
            return _evolved(state, _distribute(state, command), command.now)
        case RecordResponse():
            return _respond(state, command)
        case RecordFailure():
            return _fail_miner(state, command)
        case CheckDeadlines():
            return _check_deadlines(state, command)
        case Evaluate():
            return _evolved(state, _evaluate(state, command), command.now)
        case CancelTask():
            return _evolved(state, _cancel(state, command), command.now)
        case ArchiveTask():
            return _evolved(state, _archive(state, command), command.now)
    raise InvalidCommand(f"unknown command {type(command).__name__}")


def _create(state: TaskState, command: CreateTask) -> list[Event]:
    if state.exists:
        raise TaskAlreadyExists(f"task {state.task_id} already exists")
    if command.deadline <= command.now:
        raise InvalidCommand("the deadline must lie in the future")
    if command.miners_wanted < 1:
        raise InvalidCommand("a task needs at least one miner")
    if not command.miner_timeout_seconds > 0:  # also refuses NaN
        raise InvalidCommand("a miner's timeout must be a positive number of seconds")
    if command.task_type not in TASK_TYPES or command.priority not in PRIORITIES:
        raise InvalidCommand(f"no task type {command.task_type!r} or priority {command.priority!r}")
    # The events of a task's lifecycle are built from checked commands without pydantic
    # validating them again (``trusted``), each value of its field's type as validation
    # would leave it (floats as floats, tuples, dicts copied), so they encode the same.
    fields = {
        "task_type": command.task_type,
        "priority": command.priority,
        "input": dict(command.input),
        "client": command.client,
        "deadline": command.deadline,
        "miners_wanted": int(command.miners_wanted),
        "miner_timeout_seconds": float(command.miner_timeout_seconds),
        "idempotency_key": command.idempotency_key,
        "blobs": tuple(command.blobs),
    }
    return [trusted(TaskCreated, fields)]


def _distribute(state: TaskState, command: DistributeTask) -> list[Event]:
    if state.status != "PENDING":
        raise IllegalTransition(f"task {state.task_id} is {state.status}, not PENDING")
    if not command.assignments:
        raise InvalidCommand("distribution needs at least one miner")
    hotkeys = [assignment.hotkey for assignment in command.assignments]
    if len(set(hotkeys)) != len(hotkeys):
        raise MinerAlreadyAssigned("a miner can be assigned to a task only once")
    return [trusted(TaskDistributed, {"assignments": tuple(command.assignments)})]


def _answering_slot(state: TaskState, hotkey: str) -> MinerSlot:
    slot = state.slot(hotkey)
    if slot is None:
        raise MinerNotAssigned(f"miner {hotkey} is not assigned to task {state.task_id}")
    if state.status != "DISTRIBUTED":
        raise IllegalTransition(f"task {state.task_id} is {state.status} and takes no answers")
    if slot.state != "assigned":
        raise AlreadyAnswered(f"miner {hotkey} has already settled ({slot.state})")
    return slot


def _respond(state: TaskState, command: RecordResponse) -> Decision:
    _answering_slot(state, command.hotkey)
    if not command.latency_ms >= 0:  # also refuses NaN
        raise InvalidCommand("a latency cannot be negative")
    fields = {
        "hotkey": command.hotkey,
        "result": dict(command.result),
        "latency_ms": float(command.latency_ms),
    }
    events: list[Event] = [trusted(MinerResponded, fields)]
    return _settled(state, events, command.now)


def _fail_miner(state: TaskState, command: RecordFailure) -> Decision:
    _answering_slot(state, command.hotkey)
    events: list[Event] = [MinerFailed(hotkey=command.hotkey, reason=command.reason)]
    replacements = (command.replacement,) if command.replacement else ()
    events += _replacements(state, replacements, [command.hotkey], command)
    return _settled(state, events, command.now)


def _check_deadlines(state: TaskState, command: CheckDeadlines) -> Decision:
    now = command.now
    if state.status not in OPEN:
        return Decision([], state)
    task_expired = state.deadline is not None and now >= state.deadline
    if state.status == "PENDING":
        if not task_expired:
            return Decision([], state)
        failed = TaskFailed(
            code="deadline_exceeded",
            message="the deadline passed before any miner could take the task",
        )
        return _evolved(state, [failed], now)
    due = [slot for slot in state.assigned() if task_expired or slot.deadline <= now]
    if not due:
        return Decision([], state)
    events: list[Event] = [MinerTimedOut(hotkey=slot.hotkey) for slot in due]
    if not task_expired:
        events += _replacements(state, command.replacements, [s.hotkey for s in due], command)
    return _settled(state, events, now)


def _replacements(
    state: TaskState,
    offered: Sequence[MinerAssignment],
    vacated: list[str],
    command: RecordFailure | CheckDeadlines,
) -> list[Event]:
    """Failover: each vacated place may go to one offered miner while the deadline allows."""
    if state.deadline is not None and command.now >= state.deadline:
        return []
    events: list[Event] = []
    taken = {slot.hotkey for slot in state.miners}
    for replaces, assignment in zip(vacated, offered, strict=False):
        if assignment.hotkey in taken:
            raise MinerAlreadyAssigned(
                f"miner {assignment.hotkey} was already assigned to task {state.task_id}"
            )
        taken.add(assignment.hotkey)
        events.append(MinerAssigned(assignment=assignment, replaces=replaces))
    return events


def _settlement(state: TaskState) -> list[Event]:
    """DONE once every assigned miner has settled and one responded; FAILED if none did."""
    if state.assigned():
        return []
    responded = state.responded()
    if responded:
        return [trusted(TaskCompleted, {"responded": tuple(slot.hotkey for slot in responded)})]
    return [TaskFailed(code="no_response", message="no miner returned a usable response")]


def _evaluate(state: TaskState, command: Evaluate) -> list[Event]:
    if state.status != "DONE":
        raise IllegalTransition(f"task {state.task_id} is {state.status}, not DONE")
    responded = {slot.hotkey: slot for slot in state.responded()}
    for hotkey, score in command.scores.items():
        if hotkey not in responded:
            raise InvalidCommand(f"miner {hotkey} did not respond to task {state.task_id}")
        if not 0.0 <= score <= 1.0:
            raise InvalidCommand(f"score {score} for {hotkey} is outside 0..1")
    scores = {hotkey: float(command.scores.get(hotkey, 0.0)) for hotkey in responded}
    total = sum(scores.values())
    rewards = {hotkey: (score / total if total else 0.0) for hotkey, score in scores.items()}
    evaluated = {"validator": command.validator, "scores": scores, "rewards": rewards}
    events: list[Event] = [trusted(TaskEvaluated, evaluated)]
    if total == 0:
        events.append(TaskFailed(code="rejected", message="the validator scored every response 0"))
        return events
    # Highest score wins; among equals, whoever answered first (slot order).
    winner = max(responded, key=lambda hotkey: scores[hotkey])
    result = dict(responded[winner].result or {})
    approved = {"miner_hotkey": winner, "score": scores[winner], "result": result}
    events.append(trusted(TaskApproved, approved))
    return events


def _cancel(state: TaskState, command: CancelTask) -> list[Event]:
    if state.status not in OPEN:
        raise IllegalTransition(f"task {state.task_id} is {state.status} and cannot be cancelled")
    return [TaskCancelled(reason=command.reason)]


def _archive(state: TaskState, command: ArchiveTask) -> list[Event]:
    if state.status not in TERMINAL:
        raise IllegalTransition(f"task {state.task_id} is {state.status}, not finished")
    if state.archived:
        return []
    return [TaskArchived(blobs_deleted=command.blobs_deleted)]


def _settled(state: TaskState, events: list[Event], now: datetime) -> Decision:
    """``events`` about miners, then whatever settles the task once they have happened."""
    after = _apply(state, events, now)
    settlement = _settlement(after)
    return Decision(events + settlement, _apply(after, settlement, now))


def _evolved(state: TaskState, events: list[Event], now: datetime) -> Decision:
    return Decision(events, _apply(state, events, now))


def _apply(state: TaskState, events: Sequence[Event], now: datetime) -> TaskState:
    for event in events:
        state = evolve(state, event, now)
    return state
