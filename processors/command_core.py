"""The command core both runtimes share: one request, one head cache, one ``decide_and_seal``.

A command changes a task in three pure steps: decide it on the task's head (its state and
the hash of its last event), evolve the state by the decided events (once, inside the
decider), and seal the events onto the stream's hash chain after that head. The embedded
:class:`~processors.commands.EmbeddedCommands` and the Kafka command processor both run
commands through :func:`decide_and_seal` on heads kept in a :class:`TaskHeads`; they differ
only in how commands arrive and how the sealed events are appended.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import NamedTuple

from aggregates import Command, InvalidCommand, TaskState, decide_evolved, fold
from events import GENESIS_HASH, Envelope, seal_run, to_data
from processors.ledger_commands import RecordLedgerEvent


# Records made for every command are named tuples: as immutable as a frozen
# dataclass, and built without a call to object.__setattr__ per field.
class Outcome(NamedTuple):
    """What a command did: the task's state after it, and the events it appended."""

    state: TaskState
    events: tuple[Envelope, ...]


# A task's commands, and the one that appends to a ledger stream (see ledger_commands).
AnyCommand = Command | RecordLedgerEvent


class CommandRequest(NamedTuple):
    """One command for one stream, from ``actor``.

    ``command_id`` names a command that travels (the Kafka runtime answers by it, and its
    events name it as their cause unless ``causation_id`` says otherwise). A
    :class:`~processors.ledger_commands.RecordLedgerEvent` addresses a ledger stream, not a
    task: only the Kafka runtime runs it (see ``processors.kafka.processor``).
    """

    task_id: str
    command: AnyCommand
    actor: str
    causation_id: str | None = None
    correlation_id: str | None = None
    command_id: str | None = None


class TaskHead(NamedTuple):
    """Where a task's stream ends: its state, and the hash the next event links to."""

    state: TaskState
    hash: str


def head_of(task_id: str, stream: Sequence[Envelope]) -> TaskHead:
    """The head of a task's whole stream (an empty stream: a task that does not exist)."""
    return TaskHead(fold(task_id, stream), stream[-1].hash if stream else GENESIS_HASH)


class TaskHeads:
    """The heads of the tasks seen most recently, the least recently used dropped first.

    A head here may be stale where another writer can append to the task; its owner decides
    what a stale head means (the embedded commands read the log again, the Kafka partition
    owner is the only writer and trusts it).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._heads: OrderedDict[str, TaskHead] = OrderedDict()

    def get(self, task_id: str) -> TaskHead | None:
        head = self._heads.get(task_id)
        if head is not None:
            self._heads.move_to_end(task_id)
        return head

    def remember(self, task_id: str, head: TaskHead) -> None:
        heads = self._heads
        heads[task_id] = head
        heads.move_to_end(task_id)
        while len(heads) > self._size:
            heads.popitem(last=False)

    def forget(self, task_id: str) -> None:
        self._heads.pop(task_id, None)

    def clear(self) -> None:
        self._heads.clear()


class UnsealableEvents(ValueError):
    """Decided events the hash chain cannot take (their data has no canonical encoding)."""


def decide_and_seal(
    head: TaskHead, request: CommandRequest, ids: Callable[[], str]
) -> tuple[TaskHead, list[Envelope]]:
    """Decide ``request`` on ``head`` and seal its events after it; the new head and events.

    The decider evolves the state by its events as it decides, so nothing here folds them
    again. A refusal raises its DomainError; a command that changes nothing returns ``head``
    and no events.
    """
    command = request.command
    if isinstance(command, RecordLedgerEvent):
        raise InvalidCommand(f"{request.task_id}: a ledger command is not a task's command")
    decision = decide_evolved(head.state, command)
    if not decision.events:
        return head, []
    try:
        sealed = seal_run(
            task_id=request.task_id,
            after=(head.state.version, head.hash),
            payloads=[(ids(), e.TYPE, e.VERSION, to_data(e)) for e in decision.events],
            occurred_at=command.now,
            actor=request.actor,
            causation_id=request.causation_id or request.command_id,
            correlation_id=request.correlation_id or request.task_id,
        )
    except (ValueError, TypeError) as error:
        raise UnsealableEvents(str(error)) from error
    return TaskHead(decision.state, sealed[-1].hash), sealed
