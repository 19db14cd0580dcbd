"""What some event logs can do beyond the port, each a small protocol.

The port (:class:`events.log.EventLog`) is what every backend offers. A backend
may offer more: its own signed checkpoints, its head position, its rows without
envelopes. Whoever builds a log knows its type and says which of these it has,
in a :class:`LogFeatures`; the code that uses them receives them typed and never
asks a log at run time what it can do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from events.log_chain import Checkpoint, CheckpointStore

# (position, hash) of each event, in log order.
HashRows = list[tuple[int, str]]


class LatestCheckpoint(Protocol):
    async def latest_log_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint the log keeps, read without reading the others."""
        ...


class HeadPosition(Protocol):
    async def head_position(self) -> int:
        """The position of the log's last event (0 when empty)."""
        ...


class HashBatches(Protocol):
    """A log with one contiguous sequence of positions, read as (position, hash) alone."""

    def hash_batches(self, batch_size: int) -> AsyncIterator[HashRows]:
        """Every stored (position, hash) in log order, to the end."""
        ...

    def follow_hashes(self, after: int = 0, batch_size: int = 5_000) -> AsyncIterator[HashRows]:
        """(position, hash) of every event after ``after``, then of each new one, forever."""
        ...


class Partitioned(Protocol):
    """A log split into partitions, each with positions of its own."""

    def partition_of(self, task_id: str) -> int: ...


@dataclass(frozen=True, slots=True)
class LogFeatures:
    """A log's name (signed into its checkpoints) and what it can do beyond the port."""

    name: str
    checkpoints: CheckpointStore | None = None
    latest: LatestCheckpoint | None = None
    head: HeadPosition | None = None
    hashes: HashBatches | None = None
    partitions: Partitioned | None = None

    def partition_of(self, task_id: str) -> int:
        return self.partitions.partition_of(task_id) if self.partitions is not None else 0

    async def latest_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint the log keeps, or None (also when it keeps none)."""
        if self.latest is not None:
            return await self.latest.latest_log_checkpoint()
        if self.checkpoints is None:
            return None
        found = await self.checkpoints.log_checkpoints()
        return found[-1] if found else None
