from __future__ import annotations

from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.contract.key_store_contract")

from http_edge.key_store import KeyStore  # noqa: E402
from http_edge.key_store.sqlite import SqliteKeyStore  # noqa: E402
from tests.contract.key_store_contract import KeyStoreContract  # noqa: E402


class TestSqliteKeyStore(KeyStoreContract):
    async def make_stores(self, request: pytest.FixtureRequest) -> tuple[KeyStore, KeyStore]:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        # Two connections to one file: two processes on one data directory.
        return SqliteKeyStore(tmp_path / "keys.db"), SqliteKeyStore(tmp_path / "keys.db")
