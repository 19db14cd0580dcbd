"""Client keys in Firestore: shared by edges on different machines (the Kafka deployment).

Collections (each name behind ``prefix``): ``client_keys/{name}`` (the record,
the key as its SHA-256 only), ``key_usage/{name}:{day}`` (``count``) and
``key_rates/{name}:{window}`` (``count``). Counts are atomic server-side increments
whose result comes back with the write, so two edges charging the same key never both
take its last use, and never contend in transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
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


async def _increment(reference: AsyncDocumentReference, fields: dict[str, Any], by: int) -> int:
    """Add ``by`` to the document's ``count`` atomically and return the count after it.

    The server applies the increment and returns its result with the write, so edges
    charging one key at once never contend in transactions (which, under load, abort
    with lock timeouts); a charge past the limit is given back by the caller.
    """
    result = await reference.set({**fields, "count": Increment(by)}, merge=True)
    values = list(result.transform_results)
    if not values:
        raise RuntimeError("Firestore returned no result for an increment")
    return int(values[0].integer_value)


class FirestoreKeyStore:
    def __init__(self, client: AsyncClient, *, prefix: str = "") -> None:
        self._client = client
        self.records = client.collection(f"{prefix}client_keys")
        self.usages = client.collection(f"{prefix}key_usage")
        self.rates = client.collection(f"{prefix}key_rates")

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

        count = await _increment(reference, {"name": name, "day": day}, 1)
        if count > limit:
            await _increment(reference, {"name": name, "day": day}, -1)  # not taken: give back
            return False
        return True

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
        # One document per key and window: each take is one atomic increment, no transaction
        # for edges to contend over; a refused take still counts, which only refuses more.
        reference = self.rates.document(f"{_doc_id(name)}:{window}")
        count = await _increment(reference, {"name": name, "window": window}, 1)
        return count <= allowance

    async def close(self) -> None:
        api = getattr(self._client, "_firestore_api_internal", None)
        if api is not None:
            await api.transport.close()
