"""A btauth/1 nonce store in Firestore, shared by every edge of a deployment.

Each (hotkey, nonce) is one document, created with Firestore's create-only
write: the first edge to record it wins, on any machine, and a replay to any
other edge finds it there. Documents carry ``expires_at``; a Firestore TTL
policy on that field (``btauth_nonces`` collection group) deletes them. TTL
deletion may lag by hours, which is harmless: a nonce past its expiry is
outside the freshness window and refused as stale before the store is asked.

The ``NonceStore`` protocol is synchronous and ``miners.btauth`` calls it in a
worker thread, so this uses Firestore's synchronous client.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.api_core.exceptions import AlreadyExists, Conflict
from google.cloud.firestore import Client

COLLECTION = "btauth_nonces"


class FirestoreNonceStore:
    def __init__(self, client: Client, *, retention: float = 60.0, prefix: str = "") -> None:
        self.retention = retention
        self._client = client
        self._nonces = client.collection(prefix + COLLECTION)

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        """Record (hotkey, nonce); False if any edge recorded it before."""
        expires_at = datetime.now(UTC) + timedelta(seconds=self.retention)
        document = self._nonces.document(f"{hotkey_ss58}_{nonce_ns}")
        try:
            document.create({"hotkey": hotkey_ss58, "nonce": nonce_ns, "expires_at": expires_at})
        except (AlreadyExists, Conflict):
            return False
        return True

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
