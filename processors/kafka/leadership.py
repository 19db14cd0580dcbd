"""Which process leads: the one that owns partition 0 of the commands.

The leader also runs the processors that run once in a deployment (projections, retention,
the accountability checkpointer and anchors, weights submission); the dispatcher and the
deadline keeper run on every processor for the partitions it owns
(:mod:`processors.kafka.owned`). Ownership moves on a rebalance or a crash and the new
owner resumes from their checkpoints. Should two leaders overlap for a moment, their
commands are still decided by each task's single owner, so none is applied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

logger = logging.getLogger(__name__)

LEADER_PARTITION = 0


class Leadership:
    """Whether this process leads, told to ``on_change`` whenever that changes."""

    def __init__(self, on_change: Callable[[bool], Awaitable[None]] | None = None) -> None:
        self._on_change = on_change
        self.leading = False

    async def follow(self, owned: Collection[int]) -> None:
        """Lead exactly while ``owned`` (the partitions whose writers fenced their previous
        owners here) holds the leader partition."""
        await self._set(LEADER_PARTITION in owned)

    async def resign(self) -> None:
        await self._set(False)

    async def _set(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        logger.info("leading: %s", leading)
        if self._on_change is not None:
            await self._on_change(leading)
