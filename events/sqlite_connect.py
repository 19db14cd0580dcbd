"""Opening a SQLite database the way every embedded store here wants it: WAL, shared safely."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only, from its first byte; SQLite
    gives its -wal and -shm files the database's own permissions. An existing file keeps
    its mode, and is not opened here: POSIX locks belong to the process, so closing any
    descriptor of the file would drop the locks this process's connections hold on it, and
    another process closing its connection would then take itself for the last one,
    checkpoint the database and delete the write-ahead log these connections still use
    (their later commits lost to everyone else)."""
    if str(path) in ("", ":memory:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_wal(
    path: Path,
    *,
    synchronous: str = "full",
    busy_timeout: float = 30.0,
    page_size: int | None = None,
) -> sqlite3.Connection:
    """A connection in WAL mode with the given ``synchronous`` level.

    ``page_size`` applies to a database this call creates; an existing one keeps its own.

    Processes that open a new file at the same moment may find it locked while
    one of them switches it to WAL, a lock SQLite's busy timeout does not wait
    for; the switch is retried for up to ``busy_timeout`` seconds.
    """
    _create_private(path)
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
    )
    if page_size is not None:
        # Before WAL mode is set: that is the database's first write, which fixes its pages.
        connection.execute(f"PRAGMA page_size={int(page_size)}")
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                connection.close()
                raise
            time.sleep(0.01)
    connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
    return connection
