"""The event log port: append with optimistic concurrency, read a stream, subscribe in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from events.codec import GENESIS_HASH
from events.envelope import Envelope


class StaleVersion(Exception):
    """Someone appended to the stream since the writer read it."""

    def __init__(self, task_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"task {task_id}: expected to append after sequence {expected}, stream is at {actual}"
        )
        self.task_id = task_id
        self.expected = expected
        self.actual = actual


class BrokenChain(Exception):
    """The events offered for append do not continue the stream's hash chain."""


# One stream's append: task id, the sequence it must follow, the sealed events.
Append: TypeAlias = tuple[str, int, Sequence[Envelope]]

Shard: TypeAlias = tuple[int, int]
"""(index, count): the streams whose task id ends in a character with code point
``% count == index``. Every stream is in exactly one shard of a count."""


class LogUnavailable(Exception):
    """The log (or whatever decides on it) did not answer in time; try again later."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Events in log order, and the checkpoint that resumes right after them."""

    events: tuple[Envelope, ...]
    checkpoint: str


@dataclass(frozen=True, slots=True)
class StreamHead:
    task_id: str
    sequence: int
    hash: str


class EventLog(Protocol):
    async def append(
        self, task_id: str, expected_sequence: int, events: Sequence[Envelope]
    ) -> None:
        """Append sealed events after ``expected_sequence``; raise StaleVersion on conflict."""
        ...

    async def read_stream(self, task_id: str) -> list[Envelope]: ...

    def subscribe(
        self, *, after: str | None = None, follow: bool = True, batch_size: int = 1000
    ) -> AsyncIterator[Batch]:
        """Every event after the checkpoint ``after`` (None: from the start), in log order.

        With ``follow`` the iterator waits for new events forever; without, it
        stops at the end of the log as it was when the read reached it.
        """
        ...

    async def stream_heads(self) -> list[StreamHead]:
        """Each stream's last sequence and hash as the log records it (for the audit)."""
        ...

    async def load_checkpoint(self, consumer: str) -> str | None: ...

    async def save_checkpoint(self, consumer: str, checkpoint: str) -> None: ...

    async def check(self) -> None:
        """Raise if the log cannot serve."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class AppendsMany(Protocol):
    """A log that commits appends to many streams together (group commit)."""

    async def append_many(self, appends: Sequence[Append]) -> list[Exception | None]: ...


async def append_many(log: EventLog, appends: Sequence[Append]) -> list[Exception | None]:
    """Append to many streams at once: None per append written, or what refused it.

    A log that commits many streams together (:class:`AppendsMany`) does so in one
    call; any other gets the appends concurrently, one call each.
    """
    if isinstance(log, AppendsMany):
        return await log.append_many(appends)

    async def one(task_id: str, expected: int, events: Sequence[Envelope]) -> Exception | None:
        try:
            await log.append(task_id, expected, events)
        except (StaleVersion, BrokenChain) as refused:
            return refused
        return None

    return list(await asyncio.gather(*(one(*append) for append in appends)))


def check_continuation(
    task_id: str, head_sequence: int, head_hash: str, expected: int, events: Sequence[Envelope]
) -> None:
    """What every backend checks before appending: the version, then the chain."""
    if expected != head_sequence:
        raise StaleVersion(task_id, expected, head_sequence)
    previous_sequence, previous_hash = head_sequence, head_hash or GENESIS_HASH
    for envelope in events:
        if envelope.task_id != task_id:
            raise BrokenChain(f"event {envelope.event_id} belongs to task {envelope.task_id}")
        if envelope.sequence != previous_sequence + 1:
            raise BrokenChain(
                f"task {task_id}: sequence {envelope.sequence} after {previous_sequence}"
            )
        if envelope.prev_hash != previous_hash:
            raise BrokenChain(f"task {task_id}: event {envelope.sequence} does not link")
        previous_sequence, previous_hash = envelope.sequence, envelope.hash
