from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

pytest.register_assert_rewrite("tests.contract.key_store_contract")

from http_edge.key_store import KeyStore  # noqa: E402
from http_edge.key_store.firestore import FirestoreKeyStore  # noqa: E402
from tests.contract.key_store_contract import KeyStoreContract  # noqa: E402

if TYPE_CHECKING:
    from tests.support.firestore_emulator import FirestoreEmulator

PROJECT = "taskledger-keys"
pytestmark = pytest.mark.firestore


class TestFirestoreKeyStore(KeyStoreContract):
    async def make_stores(self, request: pytest.FixtureRequest) -> tuple[KeyStore, KeyStore]:
        emulator: FirestoreEmulator = request.getfixturevalue("firestore_emulator")
        emulator.reset(PROJECT)
        # Each on its own client, as edges on two machines would be.
        return (
            FirestoreKeyStore(emulator.client(PROJECT)),
            FirestoreKeyStore(emulator.client(PROJECT)),
        )
