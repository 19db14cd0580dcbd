"""The btauth/1 nonce-store contract, the same for every backend.

A store records (hotkey, nonce) once: the first ``check_and_store`` is True,
every later one False, from any instance on the same backing store (another
process, another edge). It retains entries at least as long as btauth/1's
freshness window, or ``bittensor.http_auth.verify`` refuses to use it.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from typing import Any

import pytest
from bittensor import http_auth

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
OTHER = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"


class NonceStoreContract(ABC):
    @abstractmethod
    def make_store(self, request: pytest.FixtureRequest) -> Any:
        """A store on a fresh backing store; a second call shares the first's backing store."""

    def test_a_nonce_is_accepted_once(self, request: pytest.FixtureRequest) -> None:
        store = self.make_store(request)
        nonce = time.time_ns()
        assert store.check_and_store(HOTKEY, nonce) is True
        assert store.check_and_store(HOTKEY, nonce) is False
        assert store.check_and_store(HOTKEY, nonce + 1) is True
        assert store.check_and_store(OTHER, nonce) is True

    def test_another_instance_sees_what_one_recorded(self, request: pytest.FixtureRequest) -> None:
        first, second = self.make_store(request), self.make_store(request)
        nonce = time.time_ns()
        assert first.check_and_store(HOTKEY, nonce) is True
        assert second.check_and_store(HOTKEY, nonce) is False

    async def test_racing_instances_let_exactly_one_win(
        self, request: pytest.FixtureRequest
    ) -> None:
        stores = [self.make_store(request) for _ in range(4)]
        nonce = time.time_ns()
        results = await asyncio.gather(
            *(asyncio.to_thread(store.check_and_store, HOTKEY, nonce) for store in stores * 2)
        )
        assert sorted(results) == [False] * 7 + [True]

    def test_entries_outlive_the_freshness_window(self, request: pytest.FixtureRequest) -> None:
        store = self.make_store(request)
        assert store.retention >= http_auth.DEFAULT_MAX_AGE + http_auth.DEFAULT_ALLOWED_SKEW
