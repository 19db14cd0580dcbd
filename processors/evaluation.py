"""Evaluation and rewards: validators' scores become rewards, rewards become weights."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aggregates import Evaluate, TaskState
from processors.command_port import TaskCommands
from projections import normalised_weights
from projections.store import ReadModelStore


class Evaluations:
    """The validator's side: DONE tasks to score, scoring them, and the resulting weights.

    The decider turns one task's scores into rewards that sum to 1 across its
    miners; the miner-statistics projection keeps each miner's moving average
    of rewards; the weights are those averages normalised to sum 1.
    """

    def __init__(
        self, commands: TaskCommands, store: ReadModelStore, clock: Callable[[], datetime]
    ) -> None:
        self._commands = commands
        self._store = store
        self._clock = clock

    async def waiting(self, limit: int) -> list[TaskState]:
        return await self._store.tasks_in_status("DONE", limit)

    async def evaluate(self, validator: str, task_id: str, scores: dict[str, float]) -> TaskState:
        outcome = await self._commands.execute(
            task_id, Evaluate(validator, scores, self._clock()), actor=validator
        )
        return outcome.state

    async def weights(self) -> dict[str, float]:
        return normalised_weights(await self._store.all_miners())
