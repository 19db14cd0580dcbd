"""Throw the read models away and fold them again from the log."""

from __future__ import annotations

from collections.abc import Callable

from events import EventLog
from projections.projector import Projector


async def rebuild(
    log: EventLog,
    projector: Projector,
    *,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 5000,
) -> int:
    """Reset the store, replay every event; returns how many events were applied."""
    await projector.store.reset()
    applied = 0
    async for batch in log.subscribe(after=None, follow=False, batch_size=batch_size):
        await projector.apply(batch)
        applied += len(batch.events)
        if progress is not None:
            progress(applied)
    return applied
