"""Where a status feed hands a task's changes: anything with ``put_nowait``.

An ``asyncio.Queue`` for an SSE stream; for a held request, a lighter waiter that keeps
only the newest change and wakes one future (see ``http_edge.waiting``).
"""

from __future__ import annotations

from typing import Any, Protocol


class StatusSink(Protocol):
    def put_nowait(self, item: Any, /) -> None: ...
