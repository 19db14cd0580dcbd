"""The edge's view of the key store: a snapshot refreshed every second, and the counting.

A request is authenticated against the snapshot in memory (no store read per
request); a background task reloads it every ``refresh_seconds``, so a key
created or revoked on any edge is seen here within that time plus one store
read. Uses of keys without a quota are counted in memory and added to the store
with each refresh; a key with a ``quota_per_day`` is charged in the store at
once, atomically, so that all edges together stop at its quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from events import format_time
from http_edge.key_store.port import (
    KeyRecord,
    KeyStore,
    by_hash,
    hash_key,
    record_for,
    usage_day,
)

log = logging.getLogger(__name__)


def rate_window(rate: float, now: float) -> tuple[int, int]:
    """The fixed window a request at ``now`` (seconds) counts in, and its allowance:
    one-second windows of ``ceil(rate)`` requests, or for rates below one a request
    in each window of ``1/rate`` seconds."""
    if rate >= 1.0:
        return int(now), math.ceil(rate)
    return int(now * rate), 1


class KeyRegistry:
    def __init__(
        self,
        store: KeyStore,
        clock: Callable[[], datetime],
        seed: Mapping[str, str],
        *,
        refresh_seconds: float = 1.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._clock = clock
        self._wall = wall
        self._seed = dict(seed)
        self.refresh_seconds = refresh_seconds
        # Until the store is read, the keys of the environment are the keys.
        now = clock()
        self._by_hash = by_hash([record_for(n, k, now) for n, k in self._seed.items() if k])
        self._by_name = {record.name: record for record in self._by_hash.values()}
        self.has_rates = False
        self._pending: Counter[tuple[str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        now = self._clock()
        for name, key in self._seed.items():
            if key:
                await self.store.seed(record_for(name, key, now))
        await self.reload()
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name="key-registry")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.flush()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.flush()
                await self.reload()
            except Exception:
                # A store that cannot answer leaves the last snapshot in force.
                log.exception("client keys: refresh failed; keeping the last snapshot")

    async def reload(self) -> None:
        records = await self.store.keys()
        live = [record for record in records if not record.revoked]
        self._by_hash = by_hash(live)
        self._by_name = {record.name: record for record in live}
        self.has_rates = any(record.rate_per_second is not None for record in live)

    async def flush(self) -> None:
        pending, self._pending = self._pending, Counter()
        if pending:
            try:
                await self.store.add_usage([(n, d, c) for (n, d), c in pending.items()])
            except Exception:
                self._pending.update(pending)
                raise

    # -- per request -------------------------------------------------------------

    def client_for(self, presented: str) -> str | None:
        """The name of a live key; the lookup is by SHA-256 digest, so its timing says
        nothing about how close a guess came."""
        record = self._by_hash.get(hash_key(presented))
        return record.name if record is not None else None

    def record(self, name: str) -> KeyRecord | None:
        return self._by_name.get(name)

    async def take_rate(self, name: str) -> bool:
        """The key's own ``rate_per_second``, counted across edges; True without one."""
        record = self._by_name.get(name)
        if record is None or record.rate_per_second is None:
            return True
        window, allowance = rate_window(record.rate_per_second, self._wall())
        return await self.store.take_rate(name, window, allowance)

    async def charge(self, client: str) -> bool:
        """Count one task created by ``client`` today; False past its ``quota_per_day``."""
        day = usage_day(self._clock())
        record = self._by_name.get(client)
        if record is None or record.quota_per_day is None:
            self._pending[(client, day)] += 1
            return True
        return await self.store.charge(client, day, record.quota_per_day)

    async def exhausted(self, client: str) -> bool:
        """Whether ``client`` has used its whole quota today (a read, not a charge): lets an
        upload be refused before its file is stored."""
        record = self._by_name.get(client)
        if record is None or record.quota_per_day is None:
            return False
        used = await self.store.usage(usage_day(self._clock()))
        return used.get(client, 0) >= record.quota_per_day

    async def refund(self, client: str) -> None:
        day = usage_day(self._clock())
        record = self._by_name.get(client)
        if record is None or record.quota_per_day is None:
            if self._pending[(client, day)] > 0:
                self._pending[(client, day)] -= 1
            return
        await self.store.refund(client, day)

    # -- administration ----------------------------------------------------------

    async def listing(self) -> list[dict[str, Any]]:
        await self.flush()
        records = await self.store.keys()
        used = await self.store.usage(usage_day(self._clock()))
        return [describe(record, used.get(record.name, 0)) for record in records]


def describe(record: KeyRecord, used_today: int) -> dict[str, Any]:
    return {
        "name": record.name,
        "quota_per_day": record.quota_per_day,
        "rate_per_second": record.rate_per_second,
        "created_at": format_time(record.created_at),
        "revoked": record.revoked,
        "used_today": used_today,
    }
