"""The embedded event log: one SQLite database in WAL mode, with group commit.

Durability: ``synchronous=FULL`` (the default here) fsyncs the WAL at every
commit, so an acknowledged append survives a process crash *and* a power loss.
``synchronous=NORMAL`` survives a process crash but may lose the last commits
on power loss. Appends that arrive while a commit is in flight are gathered
into the next transaction, so one fsync serves many appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from events.codec import GENESIS_HASH
from events.envelope import Envelope, from_stored
from events.log import Batch, BrokenChain, StaleVersion, StreamHead, check_continuation
from events.sqlite_connect import open_wal

Durability = Literal["full", "normal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    task_id  TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    type     TEXT NOT NULL,
    body     BLOB NOT NULL,
    hash     TEXT NOT NULL,
    UNIQUE (task_id, sequence)
);
CREATE TABLE IF NOT EXISTS streams (
    task_id   TEXT PRIMARY KEY,
    sequence  INTEGER NOT NULL,
    head_hash TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer   TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL
) WITHOUT ROWID;
"""

_MAX_GROUP = 2000


@dataclass
class _PendingAppend:
    task_id: str
    expected: int
    events: Sequence[Envelope]
    future: asyncio.Future[None] = field(repr=False)


def _connect(path: Path, durability: Durability) -> sqlite3.Connection:
    return open_wal(path, synchronous=durability)


_ROWS_PER_STATEMENT = 500


def _stored_heads(connection: sqlite3.Connection, task_ids: set[str]) -> dict[str, tuple[int, str]]:
    heads: dict[str, tuple[int, str]] = {}
    ids = list(task_ids)
    for start in range(0, len(ids), _ROWS_PER_STATEMENT):
        chunk = ids[start : start + _ROWS_PER_STATEMENT]
        marks = ",".join("?" * len(chunk))
        for task_id, sequence, hash in connection.execute(
            f"SELECT task_id, sequence, head_hash FROM streams WHERE task_id IN ({marks})", chunk
        ):
            heads[task_id] = (sequence, hash)
    return heads


def _insert_many(
    connection: sqlite3.Connection,
    statement: str,
    width: int,
    values: list[object],
    suffix: str = "",
) -> None:
    """One multi-row INSERT per chunk of rows (``values`` is the rows, flattened)."""
    row = "(" + ",".join("?" * width) + ")"
    step = width * _ROWS_PER_STATEMENT
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        rows = ",".join([row] * (len(chunk) // width))
        connection.execute(f"{statement} {rows}{suffix}", chunk)


class SqliteEventLog:
    def __init__(self, path: Path, *, durability: Durability = "full", poll_seconds: float = 0.005):
        self.path = path
        self._durability = durability
        self._poll_seconds = poll_seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(path, durability)
        self._writer.executescript(_SCHEMA)
        self._reader_connection: sqlite3.Connection | None = None
        self._pending: list[_PendingAppend] = []
        self._flusher: asyncio.Task[None] | None = None
        self._appended = asyncio.Event()
        self._closed = False

    # -- writes ---------------------------------------------------------------

    async def append(
        self, task_id: str, expected_sequence: int, events: Sequence[Envelope]
    ) -> None:
        if not events:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append(_PendingAppend(task_id, expected_sequence, events, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:_MAX_GROUP], self._pending[_MAX_GROUP:]
            try:
                # On the loop's own thread: a commit takes a millisecond or two, while
                # handing it to a thread makes it queue for the GIL behind the loop.
                outcomes = self._commit(group)
            except Exception as error:  # the whole transaction failed: nothing was written
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            for item, outcome in zip(group, outcomes, strict=True):
                if item.future.done():
                    continue
                if outcome is None:
                    item.future.set_result(None)
                else:
                    item.future.set_exception(outcome)
            self._wake_subscribers()

    def _commit(self, group: list[_PendingAppend]) -> list[Exception | None]:
        # Few, wide statements: the sqlite3 module gives up and retakes the GIL
        # around every step, and a statement per row lets a busy event loop
        # stall the writer thread at each one.
        connection = self._writer
        outcomes: list[Exception | None] = []
        rows: list[object] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            heads = _stored_heads(connection, {item.task_id for item in group})
            written: dict[str, tuple[int, str]] = {}
            for item in group:
                sequence, hash = heads.get(item.task_id, (0, GENESIS_HASH))
                try:
                    check_continuation(item.task_id, sequence, hash, item.expected, item.events)
                except (StaleVersion, BrokenChain) as refused:
                    outcomes.append(refused)
                    continue
                for e in item.events:
                    rows += (e.task_id, e.sequence, e.type, e.body, e.hash)
                last = item.events[-1]
                heads[item.task_id] = written[item.task_id] = (last.sequence, last.hash)
                outcomes.append(None)
            _insert_many(
                connection,
                "INSERT INTO events (task_id, sequence, type, body, hash) VALUES",
                5,
                rows,
            )
            _insert_many(
                connection,
                "INSERT INTO streams (task_id, sequence, head_hash) VALUES",
                3,
                [value for task_id, head in written.items() for value in (task_id, *head)],
                " ON CONFLICT (task_id) DO UPDATE SET "
                "sequence = excluded.sequence, head_hash = excluded.head_hash",
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return outcomes

    def _wake_subscribers(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        def write() -> None:
            self._writer.execute(
                "INSERT INTO checkpoints (consumer, checkpoint) VALUES (?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET checkpoint = excluded.checkpoint",
                (consumer, checkpoint),
            )

        write()

    # -- reads ----------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        if self._reader_connection is None:
            self._reader_connection = _connect(self.path, self._durability)
        return self._reader_connection

    async def _read(self, query: str, parameters: tuple[object, ...]) -> list[tuple[Any, ...]]:
        # On the loop's thread, like the writes: these queries take microseconds,
        # far less than a hand-off to a thread that must then wait for the GIL.
        return self._reader().execute(query, parameters).fetchall()

    async def read_stream(self, task_id: str) -> list[Envelope]:
        rows = await self._read(
            "SELECT body, hash, position FROM events WHERE task_id = ? ORDER BY sequence",
            (task_id,),
        )
        return [from_stored(body, hash, position) for body, hash, position in rows]

    async def subscribe(
        self, *, after: str | None = None, follow: bool = True, batch_size: int = 1000
    ) -> AsyncIterator[Batch]:
        position = int(after) if after else 0
        while not self._closed:
            wakeup = self._appended
            rows = await self._read(
                "SELECT body, hash, position FROM events WHERE position > ? "
                "ORDER BY position LIMIT ?",
                (position, batch_size),
            )
            if rows:
                position = rows[-1][2]
                events = tuple(from_stored(body, hash, pos) for body, hash, pos in rows)
                yield Batch(events, str(position))
                # Reads no longer suspend: let the rest of the loop run between batches.
                await asyncio.sleep(0)
                continue
            if not follow:
                return
            # Appends from this process wake us at once; other processes' appends
            # are noticed by polling.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), self._poll_seconds)

    async def raw_batches(
        self, batch_size: int
    ) -> AsyncIterator[list[tuple[str, int, bytes, str]]]:
        """Every stored (task id, sequence, body, hash) in log order, to the end as it is now.

        The next batch is read in a reader thread while the caller checks this one.
        """
        query = (
            "SELECT position, task_id, sequence, body, hash FROM events WHERE position > ? "
            "ORDER BY position LIMIT ?"
        )
        pending = asyncio.ensure_future(self._read(query, (0, batch_size)))
        try:
            while True:
                rows = await pending
                if not rows:
                    return
                pending = asyncio.ensure_future(self._read(query, (rows[-1][0], batch_size)))
                yield [(task_id, sequence, body, hash) for _, task_id, sequence, body, hash in rows]
        finally:
            pending.cancel()

    async def stream_heads(self) -> list[StreamHead]:
        rows = await self._read("SELECT task_id, sequence, head_hash FROM streams", ())
        return [StreamHead(task_id, sequence, hash) for task_id, sequence, hash in rows]

    async def load_checkpoint(self, consumer: str) -> str | None:
        rows = await self._read(
            "SELECT checkpoint FROM checkpoints WHERE consumer = ?", (consumer,)
        )
        return str(rows[0][0]) if rows else None

    async def head_position(self) -> int:
        rows = await self._read("SELECT COALESCE(MAX(position), 0) FROM events", ())
        return int(rows[0][0])

    async def count(self) -> int:
        rows = await self._read("SELECT COUNT(*) FROM events", ())
        return int(rows[0][0])

    async def check(self) -> None:
        await self._read("SELECT 1", ())

    async def close(self) -> None:
        if self._closed:
            return
        while self._flusher is not None and not self._flusher.done():
            await self._flusher
        self._closed = True
        self._wake_subscribers()
        self._writer.close()
        if self._reader_connection is not None:
            self._reader_connection.close()
