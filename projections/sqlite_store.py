"""Read models in SQLite (the embedded default), checkpoints in the same database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from aggregates import TERMINAL, TaskState
from events import PRIORITY_RANK, format_time
from events.sqlite_connect import open_wal
from projections.checkpoints import checkpoint_advances
from projections.miner_stats import MinerCount, MinerStats, tally
from projections.state_codec import state_from_doc, state_to_doc
from projections.task_blobs import task_blobs

# ``tasks`` is a rowid table: each row carries the state document (a kilobyte
# or more), which a WITHOUT ROWID b-tree keeps in its index pages and splits
# often; as a rowid table it upserts about a fifth faster. Databases made
# before keep their WITHOUT ROWID table: every statement here works on both.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id       TEXT PRIMARY KEY,
    client        TEXT NOT NULL,
    status        TEXT NOT NULL,
    priority_rank INTEGER NOT NULL,
    created_at    TEXT,
    updated_at    TEXT,
    next_deadline TEXT,
    archived      INTEGER NOT NULL,
    state         BLOB NOT NULL,
    version       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (next_deadline) WHERE next_deadline IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (status, priority_rank DESC, created_at);
CREATE INDEX IF NOT EXISTS tasks_client ON tasks (client, created_at DESC);
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (archived, status, updated_at);
CREATE TABLE IF NOT EXISTS task_blobs (
    digest  TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (digest, task_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS miners (
    hotkey TEXT PRIMARY KEY,
    stats  BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer   TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL
) WITHOUT ROWID;
"""

# Each task row carries its state document, a kilobyte or more: 16 KiB pages
# hold several per page, and a commit writes fewer pages than with 4 KiB.
_PAGE_SIZE = 16_384

_TASK_COLUMNS = "SELECT state FROM tasks"
_COLUMNS = (
    "task_id",
    "client",
    "status",
    "priority_rank",
    "created_at",
    "updated_at",
    "next_deadline",
    "archived",
    "state",
    "version",
)
# What a task's first event (TaskCreated) sets and nothing later changes: an
# update leaves these columns, and so the index on them, alone.
_SET_ONCE = frozenset({"task_id", "client", "priority_rank", "created_at"})
# A redelivered or late batch never moves a task back to an older version.
_UPSERT_TASK = (
    f"INSERT INTO tasks ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (task_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS if column not in _SET_ONCE)
    + " WHERE excluded.version > tasks.version"
)


def _task_row(state: TaskState) -> tuple[Any, ...]:
    deadline = state.next_deadline()
    return (
        state.task_id,
        state.client,
        state.status,
        PRIORITY_RANK.get(state.priority, 1),
        format_time(state.created_at) if state.created_at else None,
        format_time(state.updated_at) if state.updated_at else None,
        format_time(deadline) if deadline else None,
        int(state.archived),
        orjson.dumps(state_to_doc(state)),
        state.version,
    )


def _rows_in(
    connection: sqlite3.Connection, query: str, keys: Sequence[str]
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` (ending in ``IN``) for ``keys``, 500 keys a statement (below
    SQLite's limit of bound parameters)."""
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        yield from connection.execute(f"{query} ({','.join('?' * len(chunk))})", chunk)


def _versions(connection: sqlite3.Connection, task_ids: Sequence[str]) -> dict[str, int]:
    query = "SELECT task_id, version FROM tasks WHERE task_id IN"
    return dict(_rows_in(connection, query, task_ids))


def _miners(connection: sqlite3.Connection, hotkeys: Sequence[str]) -> dict[str, MinerStats]:
    rows = _rows_in(connection, "SELECT stats FROM miners WHERE hotkey IN", hotkeys)
    found = (MinerStats.from_doc(orjson.loads(raw)) for (raw,) in rows)
    return {stats.hotkey: stats for stats in found}


class SqliteReadModelStore:
    def __init__(self, path: Path, *, durability: str = "normal") -> None:
        # Read models can always be rebuilt from the log, so NORMAL (no fsync per
        # commit, crash-safe, may lose the last commits on power loss) is enough.
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._durability = durability
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._reader_connection = self._connect()

    def _connect(self) -> sqlite3.Connection:
        return open_wal(self.path, synchronous=self._durability, page_size=_PAGE_SIZE)

    async def _read(self, query: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # On the loop's thread: indexed lookups take microseconds, less than a
        # hand-off to a thread that must then wait for the GIL.
        return self._reader_connection.execute(query, tuple(parameters)).fetchall()

    async def commit(
        self,
        consumer: str,
        checkpoint: str,
        tasks: Sequence[TaskState],
        counts: Sequence[MinerCount],
    ) -> None:
        task_rows = [_task_row(state) for state in tasks]
        blob_rows = [(digest, state.task_id) for state in tasks for digest in task_blobs(state)]
        counted = list(dict.fromkeys(count.task_id for count in counts))

        def write() -> None:
            connection = self._writer
            # One writer at a time, for the whole read-compute-write: a concurrent
            # commit (another worker's) waits here, and then reads what this one wrote.
            connection.execute("BEGIN IMMEDIATE")
            try:
                versions = _versions(connection, counted)
                new = [c for c in counts if c.sequence > versions.get(c.task_id, 0)]
                connection.executemany(_UPSERT_TASK, task_rows)
                connection.executemany("INSERT OR IGNORE INTO task_blobs VALUES (?, ?)", blob_rows)
                if new:
                    stored = _miners(connection, list(dict.fromkeys(c.hotkey for c in new)))
                    connection.executemany(
                        "INSERT OR REPLACE INTO miners VALUES (?, ?)",
                        [(m.hotkey, orjson.dumps(m.to_doc())) for m in tally(stored, new)],
                    )
                row = connection.execute(
                    "SELECT checkpoint FROM checkpoints WHERE consumer = ?", (consumer,)
                ).fetchone()
                if checkpoint_advances(checkpoint, row[0] if row else None):
                    connection.execute(
                        "INSERT OR REPLACE INTO checkpoints VALUES (?, ?)", (consumer, checkpoint)
                    )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        write()

    async def checkpoint(self, consumer: str) -> str | None:
        rows = await self._read(
            "SELECT checkpoint FROM checkpoints WHERE consumer = ?", (consumer,)
        )
        return str(rows[0][0]) if rows else None

    async def get_task(self, task_id: str) -> TaskState | None:
        rows = await self._read(f"{_TASK_COLUMNS} WHERE task_id = ?", (task_id,))
        return state_from_doc(orjson.loads(rows[0][0])) if rows else None

    async def get_tasks(self, task_ids: Sequence[str]) -> dict[str, TaskState]:
        rows = _rows_in(self._reader_connection, f"{_TASK_COLUMNS} WHERE task_id IN", task_ids)
        found = (state_from_doc(orjson.loads(raw)) for (raw,) in rows)
        return {state.task_id: state for state in found}

    async def get_miners(self, hotkeys: Sequence[str]) -> dict[str, MinerStats]:
        return _miners(self._reader_connection, hotkeys)

    async def all_miners(self) -> list[MinerStats]:
        rows = await self._read("SELECT stats FROM miners ORDER BY hotkey")
        return [MinerStats.from_doc(orjson.loads(raw)) for (raw,) in rows]

    async def tasks_due(self, now: datetime, limit: int) -> list[str]:
        rows = await self._read(
            "SELECT task_id FROM tasks WHERE next_deadline IS NOT NULL AND next_deadline <= ? "
            "ORDER BY next_deadline LIMIT ?",
            (format_time(now), limit),
        )
        return [task_id for (task_id,) in rows]

    async def tasks_in_status(self, status: str, limit: int) -> list[TaskState]:
        rows = await self._read(
            f"{_TASK_COLUMNS} WHERE status = ? ORDER BY priority_rank DESC, created_at LIMIT ?",
            (status, limit),
        )
        return [state_from_doc(orjson.loads(raw)) for (raw,) in rows]

    async def tasks_for_client(self, client: str, limit: int) -> list[TaskState]:
        rows = await self._read(
            f"{_TASK_COLUMNS} WHERE client = ? ORDER BY created_at DESC LIMIT ?", (client, limit)
        )
        return [state_from_doc(orjson.loads(raw)) for (raw,) in rows]

    async def tasks_to_archive(self, finished_before: datetime, limit: int) -> list[TaskState]:
        marks = ",".join("?" * len(TERMINAL))
        rows = await self._read(
            f"{_TASK_COLUMNS} WHERE archived = 0 AND status IN ({marks}) AND updated_at < ? "
            "ORDER BY updated_at LIMIT ?",
            (*sorted(TERMINAL), format_time(finished_before), limit),
        )
        return [state_from_doc(orjson.loads(raw)) for (raw,) in rows]

    async def blob_in_use(self, digest: str, excluding_task: str) -> bool:
        rows = await self._read(
            "SELECT 1 FROM task_blobs JOIN tasks USING (task_id) "
            "WHERE digest = ? AND task_id != ? AND archived = 0 LIMIT 1",
            (digest, excluding_task),
        )
        return bool(rows)

    async def status_counts(self) -> dict[str, int]:
        rows = await self._read("SELECT status, COUNT(*) FROM tasks GROUP BY status")
        return {status: count for status, count in rows}

    async def recent_in_status(self, status: str, since: datetime, limit: int) -> list[TaskState]:
        rows = await self._read(
            f"{_TASK_COLUMNS} WHERE archived = 0 AND status = ? AND updated_at >= ? "
            "ORDER BY updated_at DESC LIMIT ?",
            (status, format_time(since), limit),
        )
        return [state_from_doc(orjson.loads(raw)) for (raw,) in rows]

    async def reset(self) -> None:
        def wipe() -> None:
            self._writer.executescript(
                "BEGIN; DELETE FROM tasks; DELETE FROM task_blobs; DELETE FROM miners; "
                "DELETE FROM checkpoints; COMMIT;"
            )

        wipe()

    async def check(self) -> None:
        await self._read("SELECT 1")

    async def close(self) -> None:
        self._reader_connection.close()
        self._writer.close()
