"""Bodies must keep coming: after a grace period, at least a minimum rate.

aiohttp bounds nothing while a handler waits for body bytes, so a client
sending one byte every ten seconds would hold its connection, and a slot,
forever. Every body the edge reads goes through a :class:`Pace`: each read
must complete by ``start + grace + received / min_rate``, else the request
is answered 408 and the connection closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from aiohttp import StreamReader, web

from http_edge.errors import ApiError
from http_edge.keys import context_of


@dataclass(slots=True)
class Pace:
    content: StreamReader
    min_rate: float
    grace: float
    started: float = field(default_factory=time.monotonic)
    received: int = 0

    @classmethod
    def of(cls, request: web.Request) -> Pace:
        limits = context_of(request).limits
        return cls(request.content, limits.body_min_bytes_per_second, limits.body_grace_seconds)

    async def take(self, reading: Awaitable[bytes]) -> bytes:
        """The bytes ``reading`` returns, if they arrive in time; 408 otherwise."""
        if self.content.is_eof():
            # The whole body is here already (every small one): nothing to wait for.
            return await reading
        allowance = self.started + self.grace + self.received / self.min_rate - time.monotonic()
        try:
            async with asyncio.timeout(allowance):
                data = await reading
        except TimeoutError:
            raise ApiError(
                408,
                "too_slow",
                f"the body arrived slower than {self.min_rate:g} bytes a second",
            ) from None
        self.received += len(data)
        return data
