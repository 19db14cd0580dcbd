"""The projection in a child process, supervised like any other processor.

A processors process that serves no HTTP has no status streams to tell of
changes, so on the embedded log it need not project in its own event loop: a
child follows the log file and writes the read models, on the other core,
while this process decides, dispatches and talks to miners. Everything that
reads the read models here (dispatcher, deadline keeper, retention) reads them
from the shared SQLite file, as the edge in its own process always has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from projections.projector import CONSUMER
from projections.store import ReadModelStore


class ChildProcess(Protocol):
    """A process that projects the log (``taskledger.projection_process``)."""

    def start(self) -> None:
        """Start it and wait until it follows the log."""

    @property
    def alive(self) -> bool: ...

    def stop(self) -> int | None:
        """Ask it to finish its batch and exit; its exit code."""


class ProjectionChildExited(Exception):
    """The projection process ended on its own; the runtime starts another."""


class ProjectionChild:
    """Runs a projection :class:`ChildProcess` for as long as :meth:`run` runs.

    ``run`` starts the child and watches it; when the child exits it raises,
    and the runtime starts it again with backoff (the child resumes from the
    store's checkpoint). Cancelling ``run`` asks the child to finish its batch
    and exit.
    """

    def __init__(
        self,
        new_process: Callable[[], ChildProcess],
        store: ReadModelStore,
        *,
        check_seconds: float = 0.5,
    ) -> None:
        self._new_process = new_process
        self._store = store
        self._check_seconds = check_seconds

    async def run(self) -> None:
        process = self._new_process()
        # Starting waits for the child's first line: not on the loop's thread.
        await asyncio.to_thread(process.start)
        try:
            while process.alive:
                await asyncio.sleep(self._check_seconds)
            raise ProjectionChildExited(f"the projection process exited ({process.stop()})")
        finally:
            await asyncio.to_thread(process.stop)

    async def position(self) -> int:
        """How far into the log the child has projected (its committed checkpoint)."""
        checkpoint = await self._store.checkpoint(CONSUMER)
        return int(checkpoint) if checkpoint is not None and checkpoint.isdigit() else 0
