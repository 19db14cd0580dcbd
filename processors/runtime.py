"""The embedded runtime: processors as supervised asyncio tasks in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class _Loop:
    name: str
    run: Callable[[], Awaitable[object]]
    interval: float | None
    failures: int = 0


class Runtime:
    """Runs each processor; one that crashes is logged and started again with backoff.

    A consumer resumes from its checkpoint, so a restart repeats at most the
    batch it was in the middle of, and every processor tolerates repeats.
    """

    def __init__(self) -> None:
        self._loops: list[_Loop] = []
        self._tasks: list[asyncio.Task[None]] = []

    def consumer(self, name: str, run: Callable[[], Awaitable[object]]) -> None:
        self._loops.append(_Loop(name, run, None))

    def periodic(self, name: str, interval: float, tick: Callable[[], Awaitable[object]]) -> None:
        self._loops.append(_Loop(name, tick, interval))

    def failures(self) -> dict[str, int]:
        return {loop.name: loop.failures for loop in self._loops}

    async def start(self) -> None:
        for loop in self._loops:
            self._tasks.append(asyncio.create_task(self._supervise(loop), name=loop.name))

    async def _supervise(self, loop: _Loop) -> None:
        backoff = 0.05
        while True:
            try:
                await loop.run()
                if loop.interval is None:
                    return
                backoff = 0.05
                await asyncio.sleep(loop.interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                loop.failures += 1
                log.exception("processor %s failed; restarting in %.2fs", loop.name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
