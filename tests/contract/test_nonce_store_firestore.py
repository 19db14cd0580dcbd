from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest
from google.cloud import firestore

# Before the import, so that pytest rewrites the contract's asserts too.
pytest.register_assert_rewrite("tests.contract.nonce_store_contract")

from miners.firestore_nonces import FirestoreNonceStore  # noqa: E402
from tests.contract.nonce_store_contract import NonceStoreContract  # noqa: E402

if TYPE_CHECKING:
    from tests.support.firestore_emulator import FirestoreEmulator

PROJECT = "taskledger-nonces"
pytestmark = pytest.mark.firestore


class TestFirestoreNonceStore(NonceStoreContract):
    def make_store(self, request: pytest.FixtureRequest) -> Any:
        emulator: FirestoreEmulator = request.getfixturevalue("firestore_emulator")
        if not hasattr(request.node, "_emptied"):
            emulator.reset(PROJECT)
            request.node._emptied = True
        # Each store on its own client, as separate edges would have.
        with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": emulator.host}):
            client = firestore.Client(project=PROJECT)
        store = FirestoreNonceStore(client)
        request.addfinalizer(store.close)
        return store
