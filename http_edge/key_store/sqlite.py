"""Client keys in SQLite: one file in the data directory, shared by every process on it.

Each operation is one statement (autocommit), so counts stay exact when several
edge processes charge the same key at once; SQLite's write lock orders them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from events import format_time, parse_time
from events.sqlite_connect import open_wal
from http_edge.key_store.port import KeyNameTaken, KeyRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS client_keys (
    name            TEXT PRIMARY KEY,
    key_hash        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    quota_per_day   INTEGER,
    rate_per_second REAL,
    revoked_at      TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_usage (
    name  TEXT NOT NULL,
    day   TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_rates (
    name   TEXT PRIMARY KEY,
    window INTEGER NOT NULL,
    count  INTEGER NOT NULL
) WITHOUT ROWID;
"""

_COLUMNS = "name, key_hash, created_at, quota_per_day, rate_per_second, revoked_at"


def _record(row: tuple[object, ...]) -> KeyRecord:
    name, key_hash, created_at, quota, rate, revoked_at = row
    return KeyRecord(
        name=str(name),
        key_hash=str(key_hash),
        created_at=parse_time(str(created_at)),
        quota_per_day=int(str(quota)) if quota is not None else None,
        rate_per_second=float(str(rate)) if rate is not None else None,
        revoked_at=parse_time(str(revoked_at)) if revoked_at is not None else None,
    )


class SqliteKeyStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Small writes, on the loop's thread: a statement takes microseconds. NORMAL is
        # enough: a key created just before a power loss is created again.
        self._db = open_wal(path, synchronous="normal", busy_timeout=5.0)
        self._db.executescript(_SCHEMA)

    def _run(self, query: str, parameters: Sequence[object] = ()) -> sqlite3.Cursor:
        return self._db.execute(query, tuple(parameters))

    async def create(self, record: KeyRecord) -> None:
        try:
            self._run(
                f"INSERT INTO client_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL)",
                (
                    record.name,
                    record.key_hash,
                    format_time(record.created_at),
                    record.quota_per_day,
                    record.rate_per_second,
                ),
            )
        except sqlite3.IntegrityError:
            raise KeyNameTaken(record.name) from None

    async def seed(self, record: KeyRecord) -> None:
        self._run(
            f"INSERT INTO client_keys ({_COLUMNS}) VALUES (?, ?, ?, NULL, NULL, NULL) "
            "ON CONFLICT (name) DO UPDATE SET key_hash = excluded.key_hash "
            "WHERE revoked_at IS NULL",
            (record.name, record.key_hash, format_time(record.created_at)),
        )

    async def keys(self) -> list[KeyRecord]:
        rows = self._run(f"SELECT {_COLUMNS} FROM client_keys ORDER BY name").fetchall()
        return [_record(row) for row in rows]

    async def revoke(self, name: str, at: datetime) -> KeyRecord | None:
        self._run(
            "UPDATE client_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (format_time(at), name),
        )
        row = self._run(f"SELECT {_COLUMNS} FROM client_keys WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    async def charge(self, name: str, day: str, limit: int | None) -> bool:
        if limit is not None and limit <= 0:
            return False
        cursor = self._run(
            "INSERT INTO key_usage VALUES (?, ?, 1) ON CONFLICT (name, day) "
            "DO UPDATE SET count = count + 1 WHERE ? IS NULL OR count < ?",
            (name, day, limit, limit),
        )
        return cursor.rowcount == 1

    async def refund(self, name: str, day: str) -> None:
        self._run(
            "UPDATE key_usage SET count = count - 1 WHERE name = ? AND day = ? AND count > 0",
            (name, day),
        )

    async def add_usage(self, counts: Sequence[tuple[str, str, int]]) -> None:
        if counts:
            self._db.executemany(
                "INSERT INTO key_usage VALUES (?, ?, ?) ON CONFLICT (name, day) "
                "DO UPDATE SET count = count + excluded.count",
                list(counts),
            )

    async def usage(self, day: str) -> dict[str, int]:
        rows = self._run("SELECT name, count FROM key_usage WHERE day = ?", (day,)).fetchall()
        return {str(name): int(count) for name, count in rows}

    async def take_rate(self, name: str, window: int, allowance: int) -> bool:
        if allowance <= 0:
            return False
        cursor = self._run(
            "INSERT INTO key_rates VALUES (?, ?, 1) ON CONFLICT (name) DO UPDATE SET "
            "count = CASE WHEN window = excluded.window THEN count + 1 ELSE 1 END, "
            "window = excluded.window "
            "WHERE window < excluded.window OR (window = excluded.window AND count < ?)",
            (name, window, allowance),
        )
        return cursor.rowcount == 1

    async def close(self) -> None:
        self._db.close()
