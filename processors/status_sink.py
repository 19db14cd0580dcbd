"""Where a status feed hands a task's changes: anything with ``put_nowait``.

An ``asyncio.Queue`` for an SSE stream; for a held request, a lighter waiter that keeps
only the newest change and wakes one future (see ``http_edge.waiting``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, Protocol


class StatusSink(Protocol):
    def put_nowait(self, item: Any, /) -> None: ...


class StatusListeners:
    """Who listens for which task: the registry both status feeds keep (the in-process
    broadcaster and the Kafka status topic's)."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[StatusSink]] = defaultdict(set)

    def listen(self, task_id: str) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.attach(task_id, queue)
        return queue

    def forget(self, task_id: str, queue: asyncio.Queue[Any]) -> None:
        self.detach(task_id, queue)

    def attach(self, task_id: str, sink: StatusSink) -> None:
        self._listeners[task_id].add(sink)

    def detach(self, task_id: str, sink: StatusSink) -> None:
        listeners = self._listeners.get(task_id)
        if listeners is not None:
            listeners.discard(sink)
            if not listeners:
                del self._listeners[task_id]
