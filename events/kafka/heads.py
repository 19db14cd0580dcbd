"""Every stream's head in a Kafka log: the recently used ones in memory, the rest on disk.

The heads topic is compacted to one record per task, but the tasks never stop coming: a
process that kept every head in a dict grew by some 400 bytes per task it had ever seen,
and a proxy that runs for weeks would run out of memory. :class:`HeadsTable` keeps the
``in_memory`` most recently used heads in an ordered dict and moves the least recently
used ones, a batch at a time, into a private temporary SQLite database (SQLite deletes it
when the connection closes or the process dies). A head that is asked for again comes
back into memory. A task that has no head costs one indexed lookup on disk once the
table has spilled.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from events.codec import canonical, decode

DEFAULT_HEADS_IN_MEMORY = 50_000


@dataclass(frozen=True, slots=True)
class Head:
    """A stream's head as the heads topic records it."""

    sequence: int
    hash: str
    first_offset: int
    last_offset: int

    def encode(self) -> bytes:
        return canonical(
            {
                "sequence": self.sequence,
                "hash": self.hash,
                "first_offset": self.first_offset,
                "last_offset": self.last_offset,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Head:
        fields = decode(raw)
        return cls(
            int(fields["sequence"]),
            str(fields["hash"]),
            int(fields["first_offset"]),
            int(fields["last_offset"]),
        )


_SCHEMA = """
CREATE TABLE heads (
    task_id TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    hash TEXT NOT NULL,
    first_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL
) WITHOUT ROWID
"""

_UPSERT = (
    "INSERT INTO heads VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE SET "
    "sequence = excluded.sequence, hash = excluded.hash, "
    "first_offset = excluded.first_offset, last_offset = excluded.last_offset"
)


class HeadsTable:
    """A map from task id to :class:`Head` whose memory stays bounded as it grows.

    ``in_memory`` heads stay resident; past that, the least recently used ones go to disk
    a batch at a time (a tenth of ``in_memory``, at most 1,000), so a spill is one
    statement, not one per head.
    """

    def __init__(self, in_memory: int = DEFAULT_HEADS_IN_MEMORY) -> None:
        if in_memory < 1:
            raise ValueError(f"in_memory must be at least 1, not {in_memory}")
        self._recent: OrderedDict[str, Head] = OrderedDict()
        self._in_memory = in_memory
        self._spill_batch = max(1, min(1_000, in_memory // 10))
        self._disk: sqlite3.Connection | None = None  # opened by the first spill

    @property
    def resident(self) -> int:
        """How many heads are held in memory now."""
        return len(self._recent)

    def get(self, task_id: str) -> Head | None:
        head = self._recent.get(task_id)
        if head is not None:
            self._recent.move_to_end(task_id)
            return head
        if self._disk is None:
            return None
        row = self._disk.execute(
            "SELECT sequence, hash, first_offset, last_offset FROM heads WHERE task_id = ?",
            (task_id,),
        ).fetchone()
        if row is None:
            return None
        head = Head(*row)
        self.put(task_id, head)  # used again: likely soon once more
        return head

    def put(self, task_id: str, head: Head) -> None:
        recent = self._recent
        recent[task_id] = head
        recent.move_to_end(task_id)
        if len(recent) >= self._in_memory + self._spill_batch:
            self._spill()

    def items(self) -> Iterator[tuple[str, Head]]:
        """Every task's head once, the resident (current) copy before the one on disk.

        Take them all before the next ``put``: rows spilled meanwhile may or may not show.
        """
        recent = dict(self._recent)
        yield from recent.items()
        if self._disk is not None:
            rows = self._disk.execute(
                "SELECT task_id, sequence, hash, first_offset, last_offset FROM heads"
            )
            for task_id, *fields in rows:
                if task_id not in recent:
                    yield task_id, Head(*fields)

    def close(self) -> None:
        self._recent.clear()
        if self._disk is not None:
            self._disk.close()
            self._disk = None

    def _spill(self) -> None:
        recent = self._recent
        rows = []
        while len(recent) > self._in_memory:
            task_id, head = recent.popitem(last=False)
            rows.append((task_id, head.sequence, head.hash, head.first_offset, head.last_offset))
        disk = self._open()
        disk.execute("BEGIN")
        disk.executemany(_UPSERT, rows)
        disk.execute("COMMIT")

    def _open(self) -> sqlite3.Connection:
        if self._disk is None:
            # An empty name: a private temporary database, removed when it is closed.
            disk = sqlite3.connect("", isolation_level=None)
            disk.execute("PRAGMA journal_mode = OFF")
            disk.execute("PRAGMA synchronous = OFF")
            disk.execute("PRAGMA cache_size = -2000")  # KiB: the page cache stays small
            disk.execute(_SCHEMA)
            self._disk = disk
        return self._disk
