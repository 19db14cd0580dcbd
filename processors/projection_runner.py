"""Keeps the read models current and tells listeners which tasks changed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aggregates import TaskState
from events import EventLog
from processors.status_sink import StatusListeners
from projections import Projector
from projections.store import ReadModelStore


class StatusBroadcaster(StatusListeners):
    """In-process fan-out of task changes, for status streams in the same process."""

    def publish(self, states: list[TaskState]) -> None:
        for state in states:
            for queue in self._listeners.get(state.task_id, ()):
                queue.put_nowait(state)


# The most events folded and committed at once. A projection that keeps up gets
# what was appended since it last looked; one that lags reads up to this many,
# and the more of a task's events share a batch, the fewer times its row is
# written (a whole lifecycle often fits: half the CPU per event of 2,000).
MAX_BATCH = 10_000
# Beside the dispatcher in one event loop, a batch holds the loop for as long as
# it takes to fold (about 40 ms for 2,000 events): larger ones delay dispatch.
SHARED_LOOP_MAX_BATCH = 2_000


class ProjectionRunner:
    def __init__(
        self,
        log: EventLog,
        projector: Projector,
        broadcaster: StatusBroadcaster,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._log = log
        self._projector = projector
        self._broadcaster = broadcaster
        self._max_batch = max_batch
        self.position = 0

    async def run(self) -> None:
        checkpoint = await self._projector.checkpoint()
        async for batch in self._log.subscribe(after=checkpoint, batch_size=self._max_batch):
            changed = await self._projector.apply(batch)
            self.position = int(batch.checkpoint) if batch.checkpoint.isdigit() else self.position
            self._broadcaster.publish(changed)


async def follow(
    log: EventLog,
    store: ReadModelStore,
    *,
    stop: Callable[[], bool],
    ready: Callable[[], None] | None = None,
    check_seconds: float = 0.05,
) -> None:
    """Project ``log`` into ``store`` until ``stop()`` answers true, from the store's checkpoint.

    Meant for a process of its own (see ``taskledger.projection_process``); the
    caller owns the log and the store and closes them.
    """
    runner = ProjectionRunner(log, Projector(store), StatusBroadcaster())
    following = asyncio.create_task(runner.run())
    try:
        if ready is not None:
            ready()
        while not stop():
            done, _ = await asyncio.wait({following}, timeout=check_seconds)
            if done:
                following.result()  # the runner only ends by failing: raise it here
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
