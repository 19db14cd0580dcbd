"""The miners known right now, refreshed from the directory now and then."""

from __future__ import annotations

import time

from miners.directory import MinerDirectory, MinerInfo


class MinerPool:
    def __init__(self, directory: MinerDirectory, refresh_seconds: float = 5.0) -> None:
        self._directory = directory
        self._refresh_seconds = refresh_seconds
        self._miners: dict[str, MinerInfo] = {}
        self._validators: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")

    async def refresh(self) -> None:
        self._miners = {miner.hotkey: miner for miner in await self._directory.miners()}
        self._validators = await self._directory.validators()
        self._fetched_at = time.monotonic()

    async def _fresh(self) -> None:
        if time.monotonic() - self._fetched_at > self._refresh_seconds:
            await self.refresh()

    async def miners(self) -> list[MinerInfo]:
        await self._fresh()
        return list(self._miners.values())

    async def get(self, hotkey: str) -> MinerInfo | None:
        await self._fresh()
        return self._miners.get(hotkey)

    async def validators(self) -> frozenset[str]:
        await self._fresh()
        return self._validators
