"""What the dashboard shows of the log's signed checkpoints and where they are anchored.

Read incrementally: each call asks the log only for checkpoints after the last one
seen, so an open dashboard does not reread a history of checkpoints every second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events.log_chain import CheckpointStore


class LogAnchors:
    def __init__(self, checkpoints: CheckpointStore | None, sinks: Sequence[str]) -> None:
        self._checkpoints = checkpoints
        self._sinks = tuple(sinks)
        self._after: int | None = None
        self._seen = 0
        self._latest: dict[str, Any] | None = None

    async def __call__(self) -> dict[str, Any]:
        if self._checkpoints is not None:
            for checkpoint in await self._checkpoints.log_checkpoints(self._after):
                self._seen += 1
                self._after = max(self._after or 0, int(checkpoint.position))
                self._latest = {
                    "position": checkpoint.position,
                    "partition": checkpoint.partition,
                    "events": checkpoint.events,
                    "at": checkpoint.at,
                    "log_hash": checkpoint.log_hash,
                }
        if not self._sinks:
            status = "none configured"
        elif self._latest is None:
            status = "no checkpoint yet"
        else:
            status = "ok"
        return {
            "configured": bool(self._sinks),
            "sinks": [sink.split("://", 1)[0] if "://" in sink else sink for sink in self._sinks],
            "status": status,
            "checkpoints": self._seen,
            "latest": self._latest,
        }
