"""What runs commands against tasks, wherever the deciding happens.

:class:`~processors.commands.EmbeddedCommands` decides in this process (the embedded log);
:class:`~processors.kafka.bus.KafkaCommandBus` hands the command to the Kafka command
processor that owns the task's partition. Everything that changes tasks takes either.
"""

from __future__ import annotations

from typing import Protocol

from aggregates import Command, TaskState
from processors.command_core import Outcome


class TaskCommands(Protocol):
    async def load(self, task_id: str) -> TaskState:
        """The task as its stream has it now (a task that does not exist: ``exists`` False)."""
        ...

    async def execute(
        self,
        task_id: str,
        command: Command,
        *,
        actor: str,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Outcome:
        """Decide and append; a refusal raises its DomainError."""
        ...
