from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# Before the import, so that pytest rewrites the contract's asserts too.
pytest.register_assert_rewrite("tests.contract.nonce_store_contract")

from miners.sqlite_nonces import SqliteNonceStore  # noqa: E402
from tests.contract.nonce_store_contract import NonceStoreContract  # noqa: E402


class TestSqliteNonceStore(NonceStoreContract):
    def make_store(self, request: pytest.FixtureRequest) -> Any:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        store = SqliteNonceStore(tmp_path / "nonces.db")
        request.addfinalizer(store.close)
        return store
