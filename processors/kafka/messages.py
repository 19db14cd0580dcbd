"""Commands as they travel on ``<prefix>.commands``: JSON, keyed by task id.

A record carries one :class:`~processors.command_core.CommandRequest` (with the
``command_id`` its reply will be keyed by); a record that does not is a
:class:`PoisonCommand`, which the processor sends to the dead-letter topic.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from aggregates import (
    ArchiveTask,
    CancelTask,
    CheckDeadlines,
    CreateTask,
    DistributeTask,
    Evaluate,
    RecordFailure,
    RecordResponse,
)
from events import canonical
from events.codec import decode
from processors.command_core import CommandRequest
from processors.ledger_commands import RecordLedgerEvent

COMMAND_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        CreateTask,
        DistributeTask,
        RecordResponse,
        RecordFailure,
        CheckDeadlines,
        Evaluate,
        CancelTask,
        ArchiveTask,
        RecordLedgerEvent,
    )
}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(cls) for name, cls in COMMAND_TYPES.items()
}


class PoisonCommand(ValueError):
    """A record on the commands topic that is not a command this processor can run."""


def encode_command(request: CommandRequest) -> bytes:
    """A command as it travels on ``<prefix>.commands`` (it must have its ``command_id``)."""
    name = type(request.command).__name__
    return canonical(
        {
            "id": command_id_of(request),
            "task_id": request.task_id,
            "actor": request.actor,
            "correlation_id": request.correlation_id,
            "causation_id": request.causation_id,
            "type": name,
            "command": _ADAPTERS[name].dump_python(request.command, mode="json"),
        }
    )


def decode_command(raw: bytes | None) -> CommandRequest:
    """The command a record of ``<prefix>.commands`` carries; PoisonCommand if none."""
    if raw is None:
        raise PoisonCommand("a record without a value")
    try:
        fields = decode(raw)
        adapter = _ADAPTERS.get(fields["type"])
        if adapter is None:
            raise PoisonCommand(f"unknown command type {fields['type']!r}")
        command = adapter.validate_python(fields["command"])
        request = CommandRequest(
            task_id=str(fields["task_id"]),
            command=command,
            actor=str(fields["actor"]),
            causation_id=fields.get("causation_id"),
            correlation_id=fields.get("correlation_id"),
            command_id=str(fields["id"]),
        )
    except PoisonCommand:
        raise
    except (ValueError, TypeError, KeyError, ValidationError) as error:
        raise PoisonCommand(f"undecodable command: {error}") from error
    if command.now.tzinfo is None:
        raise PoisonCommand("command time without a timezone")
    return request


def command_id_of(request: CommandRequest) -> str:
    """The id a command travels under: every command on Kafka has one."""
    if request.command_id is None:
        raise PoisonCommand(f"a command for {request.task_id} without an id")
    return request.command_id
