from __future__ import annotations

from pathlib import Path

import pytest

# Before the import, so that pytest rewrites the contract's asserts too.
pytest.register_assert_rewrite("tests.contract.read_model_store_contract")

from projections import ReadModelStore  # noqa: E402
from projections.sqlite_store import SqliteReadModelStore  # noqa: E402
from tests.contract.read_model_store_contract import ReadModelStoreContract  # noqa: E402


class TestSqliteReadModelStore(ReadModelStoreContract):
    async def make_store(self, request: pytest.FixtureRequest) -> ReadModelStore:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return SqliteReadModelStore(tmp_path / "readmodels.db")
