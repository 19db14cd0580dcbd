"""Client keys in Firestore: shared by edges on different machines (the Kafka deployment).

Collections (each name behind ``prefix``): ``client_keys/{name}`` (the record,
the key as its SHA-256 only), ``key_usage/{name}:{day}`` (``count``) and
``key_rates/{name}`` (``window``, ``count``). Conditional counts run in
transactions, so two edges charging the same key never both take its last use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from google.api_core.exceptions import AlreadyExists, Conflict
from google.cloud.firestore import (
    AsyncClient,
    AsyncDocumentReference,
    AsyncTransaction,
    FieldFilter,
    Increment,
    async_transactional,
)

from events import format_time, parse_time
from http_edge.key_store.port import KeyNameTaken, KeyRecord


def _doc_id(name: str) -> str:
    # Names from TASKLEDGER_API_KEYS may hold characters a document id may not.
    return quote(name, safe="")


def _document(record: KeyRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "key_hash": record.key_hash,
        "created_at": format_time(record.created_at),
        "quota_per_day": record.quota_per_day,
        "rate_per_second": record.rate_per_second,
        "revoked_at": format_time(record.revoked_at) if record.revoked_at else None,
    }


def _record(document: dict[str, Any]) -> KeyRecord:
    revoked_at = document.get("revoked_at")
    quota = document.get("quota_per_day")
    rate = document.get("rate_per_second")
    return KeyRecord(
        name=str(document["name"]),
        key_hash=str(document["key_hash"]),
        created_at=parse_time(str(document["created_at"])),
        quota_per_day=int(quota) if quota is not None else None,
        rate_per_second=float(rate) if rate is not None else None,
        revoked_at=parse_time(str(revoked_at)) if revoked_at else None,
    )


# Edges charging one key at once contend for its document: each retries with backoff.
_ATTEMPTS = 30


class _Turns:
    """One transaction at a time per document within this process: requests of one edge
    wait their turn here instead of contending with each other for Firestore's lock,
    so a document sees at most one transaction per edge."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def turn(self, path: str) -> AsyncIterator[None]:
        # One lock per key (and per day for usage): a few bytes each, kept.
        async with self._locks.setdefault(path, asyncio.Lock()):
            yield


class FirestoreKeyStore:
    def __init__(self, client: AsyncClient, *, prefix: str = "") -> None:
        self._client = client
        self.records = client.collection(f"{prefix}client_keys")
        self.usages = client.collection(f"{prefix}key_usage")
        self.rates = client.collection(f"{prefix}key_rates")
        self._turns = _Turns()

    def _usage_ref(self, name: str, day: str) -> AsyncDocumentReference:
        return self.usages.document(f"{_doc_id(name)}:{day}")

    async def create(self, record: KeyRecord) -> None:
        try:
            await self.records.document(_doc_id(record.name)).create(_document(record))
        except (AlreadyExists, Conflict):
            raise KeyNameTaken(record.name) from None

    async def seed(self, record: KeyRecord) -> None:
        reference = self.records.document(_doc_id(record.name))

        @async_transactional
        async def write(transaction: AsyncTransaction) -> None:
            snapshot = await reference.get(transaction=transaction)
            if not snapshot.exists:
                transaction.set(reference, _document(record))
            elif (snapshot.to_dict() or {}).get("revoked_at") is None:
                transaction.update(reference, {"key_hash": record.key_hash})

        await write(self._client.transaction())

    async def keys(self) -> list[KeyRecord]:
        records = [_record(snapshot.to_dict() or {}) async for snapshot in self.records.stream()]
        return sorted(records, key=lambda record: record.name)

    async def revoke(self, name: str, at: datetime) -> KeyRecord | None:
        reference = self.records.document(_doc_id(name))

        @async_transactional
        async def write(transaction: AsyncTransaction) -> KeyRecord | None:
            snapshot = await reference.get(transaction=transaction)
            if not snapshot.exists:
                return None
            document = snapshot.to_dict() or {}
            if document.get("revoked_at") is None:
                document["revoked_at"] = format_time(at)
                transaction.update(reference, {"revoked_at": document["revoked_at"]})
            return _record(document)

        result: KeyRecord | None = await write(self._client.transaction())
        return result

    async def charge(self, name: str, day: str, limit: int | None) -> bool:
        reference = self._usage_ref(name, day)
        if limit is None:
            await reference.set({"name": name, "day": day, "count": Increment(1)}, merge=True)
            return True
        if limit <= 0:
            return False

        @async_transactional
        async def write(transaction: AsyncTransaction) -> bool:
            snapshot = await reference.get(transaction=transaction)
            count = int((snapshot.to_dict() or {}).get("count", 0)) if snapshot.exists else 0
            if count >= limit:
                return False
            transaction.set(reference, {"name": name, "day": day, "count": count + 1})
            return True

        async with self._turns.turn(reference.path):
            taken: bool = await write(self._client.transaction(max_attempts=_ATTEMPTS))
        return taken

    async def refund(self, name: str, day: str) -> None:
        await self._usage_ref(name, day).set(
            {"name": name, "day": day, "count": Increment(-1)}, merge=True
        )

    async def add_usage(self, counts: Sequence[tuple[str, str, int]]) -> None:
        if not counts:
            return
        batch = self._client.batch()
        for name, day, count in counts:
            batch.set(
                self._usage_ref(name, day),
                {"name": name, "day": day, "count": Increment(count)},
                merge=True,
            )
        await batch.commit()

    async def usage(self, day: str) -> dict[str, int]:
        query = self.usages.where(filter=FieldFilter("day", "==", day))
        found: dict[str, int] = {}
        async for snapshot in query.stream():
            document = snapshot.to_dict() or {}
            found[str(document["name"])] = int(document.get("count", 0))
        return found

    async def take_rate(self, name: str, window: int, allowance: int) -> bool:
        if allowance <= 0:
            return False
        reference = self.rates.document(_doc_id(name))

        @async_transactional
        async def write(transaction: AsyncTransaction) -> bool:
            snapshot = await reference.get(transaction=transaction)
            document = snapshot.to_dict() or {} if snapshot.exists else {}
            same = document.get("window") == window
            count = int(document.get("count", 0)) if same else 0
            if count >= allowance:
                return False
            transaction.set(reference, {"window": window, "count": count + 1})
            return True

        async with self._turns.turn(reference.path):
            taken: bool = await write(self._client.transaction(max_attempts=_ATTEMPTS))
        return taken

    async def close(self) -> None:
        api = getattr(self._client, "_firestore_api_internal", None)
        if api is not None:
            await api.transport.close()
