"""A btauth/1 nonce store in SQLite, shared by the processes of one host."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from events.sqlite_connect import open_wal


class SqliteNonceStore:
    """A :class:`~bittensor.http_auth.NonceStore` shared by processes on one host.

    One SQLite database in WAL mode; the primary key on (hotkey, nonce) makes
    ``INSERT OR IGNORE`` the atomic "first one wins" across processes. Rows
    expire ``retention`` seconds after they were stored, by the wall clock all
    processes share; expired rows are purged every ``purge_interval`` seconds
    by whichever process notices first. An expired row still present is
    harmless: its nonce is already outside the freshness window and rejected
    as stale before the store is asked.

    One instance per process; thread-safe within it.
    """

    def __init__(
        self,
        path: Path,
        retention: float = 60.0,
        *,
        purge_interval: float = 10.0,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.retention = retention
        self._purge_interval = purge_interval
        self._lock = threading.Lock()
        # Losing the last moments of nonces in a power cut only matters for
        # requests that are stale by the time the host is back.
        self._connection = open_wal(path, synchronous="normal", busy_timeout=busy_timeout)
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS btauth_nonces ("
            " hotkey TEXT NOT NULL,"
            " nonce INTEGER NOT NULL,"
            " expires_at REAL NOT NULL,"
            " PRIMARY KEY (hotkey, nonce)"
            ") WITHOUT ROWID"
        )
        self._connection.execute(
            "CREATE INDEX IF NOT EXISTS btauth_nonces_expiry ON btauth_nonces (expires_at)"
        )
        self._next_purge = time.monotonic() + purge_interval

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        """Record (hotkey, nonce); False if any process recorded it before."""
        now = time.time()
        with self._lock:
            if time.monotonic() >= self._next_purge:
                self._purge(now)
            cursor = self._connection.execute(
                "INSERT OR IGNORE INTO btauth_nonces (hotkey, nonce, expires_at) VALUES (?, ?, ?)",
                (hotkey_ss58, nonce_ns, now + self.retention),
            )
            return cursor.rowcount == 1

    def purge_expired(self) -> int:
        """Delete expired rows now; returns how many."""
        with self._lock:
            return self._purge(time.time())

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _purge(self, now: float) -> int:
        self._next_purge = time.monotonic() + self._purge_interval
        cursor = self._connection.execute("DELETE FROM btauth_nonces WHERE expires_at <= ?", (now,))
        return cursor.rowcount
