"""A bittensor ``Client`` opened on first use (it must be connected before any call)."""

from __future__ import annotations

import asyncio
from typing import Any


class ChainSession:
    """Hands out the client, connected once; ``close`` when done."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._connected = False
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        async with self._lock:
            if not self._connected:
                await self._client.connect()
                self._connected = True
        return self._client

    async def close(self) -> None:
        if self._connected:
            await self._client.close()
            self._connected = False
