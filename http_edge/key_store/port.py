"""The key-store port: client keys (as hashes), their limits, and usage counted across edges.

Every edge process serving the same deployment shares one store (SQLite in the
data directory, or Firestore), so a key created or revoked on one edge is seen
by all, and quotas and rates are counted once for all of them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


class KeyNameTaken(Exception):
    """A key with this name exists already (revoked or not)."""


def hash_key(key: str) -> str:
    """The only form in which a key is kept: SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    return "tl_" + secrets.token_urlsafe(24)


def valid_key_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def usage_day(now: datetime) -> str:
    """The UTC day a quota counts in: ``YYYY-MM-DD``."""
    return now.astimezone(UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    name: str
    key_hash: str
    created_at: datetime
    quota_per_day: int | None = None
    rate_per_second: float | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class KeyStore(Protocol):
    async def create(self, record: KeyRecord) -> None:
        """Add a key; :class:`KeyNameTaken` if the name exists, revoked or not."""
        ...

    async def seed(self, record: KeyRecord) -> None:
        """A key from the environment: added if new; its hash replaced if the name exists
        and is not revoked (a revoked key stays revoked)."""
        ...

    async def keys(self) -> list[KeyRecord]: ...

    async def revoke(self, name: str, at: datetime) -> KeyRecord | None:
        """Mark a key revoked (once; later calls keep the first time); None if unknown."""
        ...

    async def charge(self, name: str, day: str, limit: int | None) -> bool:
        """Count one use of ``name`` on ``day`` unless that would pass ``limit``; atomic
        across processes. False (and nothing counted) when the limit is reached."""
        ...

    async def refund(self, name: str, day: str) -> None:
        """Take back one counted use (the intake that charged it created nothing)."""
        ...

    async def add_usage(self, counts: Sequence[tuple[str, str, int]]) -> None:
        """Add uses counted elsewhere: (name, day, count) each."""
        ...

    async def usage(self, day: str) -> dict[str, int]: ...

    async def take_rate(self, name: str, window: int, allowance: int) -> bool:
        """One request of ``name`` in the rate window numbered ``window``; False once
        ``allowance`` requests were taken in that window, on any edge."""
        ...

    async def close(self) -> None: ...


def record_for(
    name: str,
    key: str,
    now: datetime,
    *,
    quota_per_day: int | None = None,
    rate_per_second: float | None = None,
) -> KeyRecord:
    return KeyRecord(
        name=name,
        key_hash=hash_key(key),
        created_at=now,
        quota_per_day=quota_per_day,
        rate_per_second=rate_per_second,
    )


def by_hash(records: Sequence[KeyRecord]) -> dict[str, KeyRecord]:
    """Records by key hash (a hash shared by two names resolves to the first)."""
    found: dict[str, KeyRecord] = {}
    for record in records:
        found.setdefault(record.key_hash, record)
    return found
