"""The key-store contract, written once and run against every backend.

``make_stores`` returns two stores on the same data (as two edge processes would
have): what one writes, the other must see, and counts must add up across both.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from http_edge.key_store import KeyNameTaken, KeyStore, hash_key
from http_edge.key_store.manage import InvalidKeyRequest, create_key, list_keys
from http_edge.key_store.port import record_for

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
DAY = "2026-12-03"


class KeyStoreContract(abc.ABC):
    @abc.abstractmethod
    async def make_stores(self, request: pytest.FixtureRequest) -> tuple[KeyStore, KeyStore]:
        """Two fresh stores over one empty data set."""

    @pytest.fixture
    async def stores(self, request: pytest.FixtureRequest) -> AsyncIterator[tuple[KeyStore, ...]]:
        first, second = await self.make_stores(request)
        yield first, second
        await first.close()
        await second.close()

    async def test_a_created_key_is_kept_as_its_hash_and_seen_by_the_other(
        self, stores: tuple[KeyStore, KeyStore]
    ) -> None:
        one, two = stores
        made = await create_key(one, "carol", T0, quota_per_day=5, rate_per_second=2.5)
        assert made.key.startswith("tl_") and len(made.key) > 30
        [record] = await two.keys()
        assert record == made.record
        assert record.key_hash == hash_key(made.key) != made.key
        assert (record.quota_per_day, record.rate_per_second) == (5, 2.5)
        assert not record.revoked

    async def test_a_name_in_use_is_refused_even_when_revoked(
        self, stores: tuple[KeyStore, KeyStore]
    ) -> None:
        one, two = stores
        await create_key(one, "carol", T0)
        with pytest.raises(KeyNameTaken):
            await create_key(two, "carol", T0)
        await one.revoke("carol", T0)
        with pytest.raises(KeyNameTaken):
            await create_key(two, "carol", T0)

    async def test_bad_names_and_limits_are_refused_before_anything_is_written(
        self, stores: tuple[KeyStore, KeyStore]
    ) -> None:
        one, _ = stores
        for name in ("", "a/b", "x" * 65, "-lead", "sp ace"):
            with pytest.raises(InvalidKeyRequest):
                await create_key(one, name, T0)
        with pytest.raises(InvalidKeyRequest):
            await create_key(one, "ok", T0, quota_per_day=-1)
        with pytest.raises(InvalidKeyRequest):
            await create_key(one, "ok", T0, rate_per_second=0)
        with pytest.raises(InvalidKeyRequest):
            await create_key(one, "ok", T0, rate_per_second=float("nan"))
        assert await one.keys() == []

    async def test_revoking_keeps_the_first_time_and_unknown_names_are_none(
        self, stores: tuple[KeyStore, KeyStore]
    ) -> None:
        one, two = stores
        await create_key(one, "carol", T0)
        first = await two.revoke("carol", T0 + timedelta(minutes=1))
        again = await one.revoke("carol", T0 + timedelta(minutes=2))
        assert first is not None and again is not None
        assert first.revoked_at == again.revoked_at == T0 + timedelta(minutes=1)
        assert await one.revoke("nobody", T0) is None
        [record] = await two.keys()
        assert record.revoked

    async def test_seeding_adds_replaces_a_live_hash_and_never_revives(
        self, stores: tuple[KeyStore, KeyStore]
    ) -> None:
        one, two = stores
        await one.seed(record_for("env", "first-key", T0))
        await two.seed(record_for("env", "second-key", T0))
        [record] = await one.keys()
        assert record.key_hash == hash_key("second-key")
        await one.revoke("env", T0)
        await two.seed(record_for("env", "third-key", T0))
        [record] = await one.keys()
        assert record.revoked and record.key_hash == hash_key("second-key")

    async def test_charges_stop_at_the_quota_across_stores(
        self, stores: tuple[KeyStore, KeyStore]
    ) -> None:
        one, two = stores
        results = await asyncio.gather(
            *(store.charge("carol", DAY, 5) for store in (one, two) for _ in range(4))
        )
        assert sum(results) == 5
        assert await one.usage(DAY) == {"carol": 5}
        await two.refund("carol", DAY)
        assert await one.charge("carol", DAY, 5)
        assert not await two.charge("carol", DAY, 5)
        assert not await one.charge("dave", DAY, 0)
        assert await one.charge("carol", "2026-12-04", 5)  # a new UTC day starts at zero

    async def test_uses_without_quota_add_up(self, stores: tuple[KeyStore, KeyStore]) -> None:
        one, two = stores
        await one.add_usage([("alice", DAY, 3), ("bob", DAY, 1)])
        await two.add_usage([("alice", DAY, 2)])
        assert await one.charge("alice", DAY, None)
        assert await two.usage(DAY) == {"alice": 6, "bob": 1}
        listing = await list_keys(one, DAY)
        assert listing == []  # usage alone is not a key

    async def test_a_rate_window_allows_its_allowance_across_stores(
        self, stores: tuple[KeyStore, KeyStore]
    ) -> None:
        one, two = stores
        taken = [await store.take_rate("carol", 100, 3) for store in (one, two, one, two)]
        assert taken == [True, True, True, False]
        assert await two.take_rate("carol", 101, 3)  # the next window starts afresh
        assert not await one.take_rate("carol", 101, 0)
