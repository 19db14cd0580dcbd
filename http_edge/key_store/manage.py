"""Creating, listing and revoking client keys: one place for the HTTP API and the CLI."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events import format_time
from http_edge.key_store.port import KeyRecord, KeyStore, new_key, record_for, valid_key_name
from http_edge.key_store.registry import describe


class InvalidKeyRequest(ValueError):
    """A name or limit we cannot use; the message says which and why."""


@dataclass(frozen=True, slots=True)
class NewKey:
    record: KeyRecord
    key: str

    def document(self) -> dict[str, Any]:
        return {
            "name": self.record.name,
            "key": self.key,
            "quota_per_day": self.record.quota_per_day,
            "rate_per_second": self.record.rate_per_second,
            "created_at": format_time(self.record.created_at),
        }


def check_limits(quota_per_day: int | None, rate_per_second: float | None) -> None:
    if quota_per_day is not None and not 0 <= quota_per_day <= 10**12:
        raise InvalidKeyRequest("quota_per_day must be an integer from 0 to 10^12")
    if rate_per_second is not None and (
        not math.isfinite(rate_per_second) or not 0 < rate_per_second <= 10**6
    ):
        raise InvalidKeyRequest("rate_per_second must be a number above 0, at most 10^6")


async def create_key(
    store: KeyStore,
    name: str,
    now: datetime,
    *,
    quota_per_day: int | None = None,
    rate_per_second: float | None = None,
) -> NewKey:
    """A new key under ``name``; :class:`KeyNameTaken` if the name is in use."""
    if not valid_key_name(name):
        raise InvalidKeyRequest(
            "name must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    check_limits(quota_per_day, rate_per_second)
    key = new_key()
    record = record_for(
        name, key, now, quota_per_day=quota_per_day, rate_per_second=rate_per_second
    )
    await store.create(record)
    return NewKey(record, key)


async def list_keys(store: KeyStore, day: str) -> list[dict[str, Any]]:
    used = await store.usage(day)
    return [describe(record, used.get(record.name, 0)) for record in await store.keys()]
