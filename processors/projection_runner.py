"""Keeps the read models current and tells listeners which tasks changed."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aggregates import TaskState
from events import EventLog
from projections import Projector


class StatusBroadcaster:
    """In-process fan-out of task changes, for status streams in the same process."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[TaskState]]] = defaultdict(set)

    def listen(self, task_id: str) -> asyncio.Queue[TaskState]:
        queue: asyncio.Queue[TaskState] = asyncio.Queue()
        self._listeners[task_id].add(queue)
        return queue

    def forget(self, task_id: str, queue: asyncio.Queue[TaskState]) -> None:
        listeners = self._listeners.get(task_id)
        if listeners is not None:
            listeners.discard(queue)
            if not listeners:
                del self._listeners[task_id]

    def publish(self, states: list[TaskState]) -> None:
        for state in states:
            for queue in self._listeners.get(state.task_id, ()):
                queue.put_nowait(state)


class ProjectionRunner:
    def __init__(self, log: EventLog, projector: Projector, broadcaster: StatusBroadcaster) -> None:
        self._log = log
        self._projector = projector
        self._broadcaster = broadcaster
        self.position = 0

    async def run(self) -> None:
        checkpoint = await self._projector.checkpoint()
        async for batch in self._log.subscribe(after=checkpoint, batch_size=2000):
            changed = await self._projector.apply(batch)
            self.position = int(batch.checkpoint) if batch.checkpoint.isdigit() else self.position
            self._broadcaster.publish(changed)
