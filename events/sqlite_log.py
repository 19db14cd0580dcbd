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

from events.codec import GENESIS_HASH, canonical, decode
from events.envelope import Envelope, from_stored
from events.log import (
    Append,
    Batch,
    BrokenChain,
    Shard,
    StaleVersion,
    StreamHead,
    check_continuation,
)
from events.log_chain import Checkpoint
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
CREATE TABLE IF NOT EXISTS log_checkpoints (
    position INTEGER PRIMARY KEY,
    document BLOB NOT NULL
);
"""

_MAX_GROUP = 2000


@dataclass
class _PendingAppends:
    """One caller's appends (one stream each), acknowledged together after one commit."""

    appends: Sequence[Append]
    future: asyncio.Future[list[Exception | None]] = field(repr=False)


def _connect(path: Path, durability: Durability) -> sqlite3.Connection:
    # SQLite's default 4 KiB pages. 16 KiB pages cost a fifth less CPU per event in
    # large group commits (the engine bench), but made the small, frequent commits of
    # an edge and a processors process sharing the file slower: intake fell by a fifth.
    return open_wal(path, synchronous=durability)


_ROWS_PER_STATEMENT = 500


def _shard_filter(shard: Shard | None) -> tuple[str, tuple[int, ...]]:
    if shard is None:
        return "", ()
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    return " AND COALESCE(unicode(substr(task_id, -1)), 0) % ? = ?", (count, index)


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
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._writer = _connect(path, durability)
        self._writer.executescript(_SCHEMA)
        self._reader_connection: sqlite3.Connection | None = None
        self._pending: list[_PendingAppends] = []
        self._flusher: asyncio.Task[None] | None = None
        self._appended = asyncio.Event()
        self._closed = False

    # -- writes ---------------------------------------------------------------

    async def append(
        self, task_id: str, expected_sequence: int, events: Sequence[Envelope]
    ) -> None:
        if not events:
            return
        (outcome,) = await self.append_many([(task_id, expected_sequence, events)])
        if outcome is not None:
            raise outcome

    async def append_many(self, appends: Sequence[Append]) -> list[Exception | None]:
        """Append to many streams in one group commit; each is refused or written on its own.

        Returns, per append, None once it is durable, or the StaleVersion or
        BrokenChain that refused it. A failure of the whole transaction raises.
        """
        written = [append for append in appends if append[2]]
        if not written:
            return [None] * len(appends)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Exception | None]] = loop.create_future()
        self._pending.append(_PendingAppends(written, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        outcomes = await future
        if len(written) == len(appends):
            return outcomes
        refused = iter(outcomes)
        return [next(refused) if append[2] else None for append in appends]

    async def _flush(self) -> None:
        while self._pending:
            group, size = 0, 0
            while group < len(self._pending) and (group == 0 or size < _MAX_GROUP):
                size += len(self._pending[group].appends)
                group += 1
            items, self._pending = self._pending[:group], self._pending[group:]
            try:
                # On the loop's own thread: a commit takes a millisecond or two, while
                # handing it to a thread makes it queue for the GIL behind the loop.
                outcomes = self._commit([a for item in items for a in item.appends])
            except Exception as error:  # the whole transaction failed: nothing was written
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            start = 0
            for item in items:
                end = start + len(item.appends)
                if not item.future.done():
                    item.future.set_result(outcomes[start:end])
                start = end
            self._wake_subscribers()

    def _commit(self, group: list[Append]) -> list[Exception | None]:
        # Few, wide statements: the sqlite3 module gives up and retakes the GIL
        # around every step, and a statement per row lets a busy event loop
        # stall the writer thread at each one.
        connection = self._writer
        outcomes: list[Exception | None] = []
        rows: list[object] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            heads = _stored_heads(connection, {task_id for task_id, _, _ in group})
            written: dict[str, tuple[int, str]] = {}
            for task_id, expected, events in group:
                sequence, hash = heads.get(task_id, (0, GENESIS_HASH))
                try:
                    check_continuation(task_id, sequence, hash, expected, events)
                except (StaleVersion, BrokenChain) as refused:
                    outcomes.append(refused)
                    continue
                for e in events:
                    rows += (e.task_id, e.sequence, e.type, e.body, e.hash)
                last = events[-1]
                heads[task_id] = written[task_id] = (last.sequence, last.hash)
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

    log_name = "sqlite"

    async def save_log_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep a signed checkpoint of the log chain in the log's own database."""
        self._writer.execute(
            "INSERT OR IGNORE INTO log_checkpoints (position, document) VALUES (?, ?)",
            (checkpoint.position, canonical(checkpoint.to_document())),
        )

    # -- reads ----------------------------------------------------------------

    async def log_checkpoints(
        self, after: int | None = None, limit: int | None = None
    ) -> list[Checkpoint]:
        rows = await self._read(
            "SELECT document FROM log_checkpoints WHERE position > ? ORDER BY position LIMIT ?",
            (after if after is not None else -1, limit if limit is not None else -1),
        )
        return [Checkpoint.from_document(decode(document)) for (document,) in rows]

    async def follow_hashes(
        self, after: int = 0, batch_size: int = 5_000
    ) -> AsyncIterator[list[tuple[int, str]]]:
        """(position, hash) of every event after ``after``, then of each new one, forever.

        What the checkpointer folds: no body is read or decoded.
        """
        while not self._closed:
            wakeup = self._appended
            rows: list[tuple[int, str]] = (
                self._reader()
                .execute(
                    "SELECT position, hash FROM events WHERE position > ? "
                    "ORDER BY position LIMIT ?",
                    (after, batch_size),
                )
                .fetchall()
            )
            if rows:
                after = rows[-1][0]
                yield rows
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), max(self._poll_seconds, 0.05))

    async def latest_log_checkpoint(self) -> Checkpoint | None:
        rows = await self._read(
            "SELECT document FROM log_checkpoints ORDER BY position DESC LIMIT 1", ()
        )
        return Checkpoint.from_document(decode(rows[0][0])) if rows else None

    async def hash_batches(self, batch_size: int) -> AsyncIterator[list[tuple[int, str]]]:
        """Every stored (position, hash) in log order: what the log chain folds."""
        after = 0
        while True:
            rows: list[tuple[int, str]] = (
                self._reader()
                .execute(
                    "SELECT position, hash FROM events WHERE position > ? "
                    "ORDER BY position LIMIT ?",
                    (after, batch_size),
                )
                .fetchall()
            )
            if not rows:
                return
            after = rows[-1][0]
            yield rows
            await asyncio.sleep(0)

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
        self, batch_size: int, shard: Shard | None = None
    ) -> AsyncIterator[list[tuple[int, str, int, bytes, str]]]:
        """Every stored (position, task id, sequence, body, hash) in log order, to the end.

        With ``shard``, only the rows of that shard's streams (see :data:`Shard`).
        """
        where, shard_parameters = _shard_filter(shard)
        query = (
            "SELECT position, task_id, sequence, body, hash FROM events "
            f"WHERE position > ?{where} ORDER BY position LIMIT ?"
        )
        after = 0
        while True:
            # On the loop's thread: a reader thread would hold the GIL for most of
            # the read anyway, building the rows.
            rows: list[tuple[int, str, int, bytes, str]] = (
                self._reader().execute(query, (after, *shard_parameters, batch_size)).fetchall()
            )
            if not rows:
                return
            after = rows[-1][0]
            yield rows
            await asyncio.sleep(0)  # let the rest of the loop run between batches

    async def stream_heads(self, shard: Shard | None = None) -> list[StreamHead]:
        where, shard_parameters = _shard_filter(shard)
        rows = await self._read(
            f"SELECT task_id, sequence, head_hash FROM streams WHERE 1{where}", shard_parameters
        )
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
