"""The deadline keeper: times out silent miners (with failover) and fails overdue tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from aggregates import CheckDeadlines, DomainError
from processors.command_port import TaskCommands
from processors.work import WorkSender
from projections.store import ReadModelStore

log = logging.getLogger(__name__)

NAME = "deadline-keeper"


class DeadlineKeeper:
    """Asks the read model which open tasks have a deadline behind them, and acts.

    It holds no state of its own, so a restart loses nothing: the read model
    remembers every open task's next deadline. It acts only on the tasks ``owns`` says are
    this process's (on Kafka, those of the command partitions it owns).
    """

    def __init__(
        self,
        commands: TaskCommands,
        store: ReadModelStore,
        sender: WorkSender,
        clock: Callable[[], datetime],
        batch_size: int = 500,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self._commands = commands
        self._store = store
        self._sender = sender
        self._clock = clock
        self._batch_size = batch_size
        self._owns = owns

    async def tick(self) -> int:
        """Handle every task due now; returns how many tasks changed."""
        now = self._clock()
        due = await self._store.tasks_due(now, self._batch_size)
        if self._owns is not None:
            due = [task_id for task_id in due if self._owns(task_id)]
        changed = await asyncio.gather(*(self._expire(task_id, now) for task_id in due))
        return sum(changed)

    async def _expire(self, task_id: str, now: datetime) -> bool:
        state = await self._commands.load(task_id)
        overdue = state.deadline is not None and now >= state.deadline
        silent = [slot for slot in state.assigned() if slot.deadline <= now]
        replacements = [] if overdue else await self._sender.replacement(state, len(silent))
        try:
            outcome = await self._commands.execute(
                task_id, CheckDeadlines(now, tuple(replacements)), actor=NAME
            )
        except DomainError as refused:
            log.warning("deadline check of %s refused: %s", task_id, refused)
            return False
        self._sender.deliver(outcome)
        return bool(outcome.events)
