"""The checkpointer: folds the log chain as the log grows and signs checkpoints of it.

It follows the log like any consumer and adds each event's hash to its
partition's chain (one SHA-256 per event, off the append path, so appends do
not wait for it). A partition gets a checkpoint once ``every_events`` events
have gone unsigned, and at every tick after ``every_seconds`` when any have;
a quiet log signs nothing new. Each checkpoint is kept in the log itself and
published to the anchor sinks.

After a restart it resumes from the last checkpoint kept in the log: the
chain up to there is in the checkpoint, the rest is folded again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

from bittensor.signing import Signer

from events import EventLog, format_time
from events.capabilities import HashBatches
from events.log_chain import ChainHead, Checkpoint, CheckpointStore, checkpoint_message
from miners.proofs import sign_hex
from processors.anchors import AnchorSink, publish_all

log = logging.getLogger(__name__)

Resume = Callable[[dict[int, ChainHead]], str | None]
"""The log's subscription checkpoint right after the given partitions' chain heads."""


class Checkpointer:
    def __init__(
        self,
        log: EventLog,
        store: CheckpointStore,
        signer: Signer,
        *,
        log_name: str,
        partition_of: Callable[[str], int],
        resume: Resume,
        hashes: HashBatches | None = None,
        every_events: int,
        every_seconds: float,
        sinks: Sequence[AnchorSink],
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._store = store
        self._signer = signer
        self._log_name = log_name
        self._partition_of = partition_of
        self._resume = resume
        self._hashes = hashes
        self._every_events = every_events
        self._every_seconds = every_seconds
        self._sinks = sinks
        self._clock = clock
        self._monotonic = monotonic
        self._heads: dict[int, ChainHead] = {}
        self._unsigned: dict[int, int] = {}
        self._last_signed = monotonic()
        self.latest: Checkpoint | None = None

    @property
    def folded(self) -> int:
        """Events folded into the chain so far, every partition together."""
        return sum(head.events for head in self._heads.values())

    async def _load(self) -> None:
        heads: dict[int, ChainHead] = {}
        latest: Checkpoint | None = None
        for checkpoint in await self._store.log_checkpoints():
            heads[checkpoint.partition] = ChainHead(
                checkpoint.position, checkpoint.events, checkpoint.log_hash
            )
            latest = checkpoint
        self._heads, self._unsigned, self.latest = heads, {}, latest

    async def run(self) -> None:
        await self._load()
        after = self._resume(self._heads)
        async for entries in self._entries(after):
            for partition, position, event_hash in entries:
                head = self._heads.get(partition)
                if head is None:
                    head = self._heads[partition] = ChainHead()
                head.add(position, event_hash)
                unsigned = self._unsigned[partition] = self._unsigned.get(partition, 0) + 1
                if unsigned >= self._every_events:
                    await self._sign(partition)
            await self.tick()

    async def _entries(self, after: str | None) -> AsyncIterator[list[tuple[int, int, str]]]:
        """(partition, position, event hash) as the log grows, in log order per partition."""
        if self._hashes is not None:
            # The embedded log hands out positions and hashes alone: no body to decode.
            async for rows in self._hashes.follow_hashes(int(after) if after else 0):
                yield [(0, position, event_hash) for position, event_hash in rows]
            return
        partition_of = self._partition_of
        async for batch in self._log.subscribe(after=after, follow=True):
            entries = []
            for envelope in batch.events:
                if envelope.position is None:
                    raise ValueError("the log hands out events without a position")
                entries.append((partition_of(envelope.task_id), envelope.position, envelope.hash))
            yield entries

    async def close(self) -> None:
        """Close the sinks that hold connections (a bucket's client, the chain's)."""
        for sink in self._sinks:
            await sink.close()

    async def tick(self) -> None:
        """Sign every partition with unsigned events once ``every_seconds`` have passed."""
        if self._monotonic() - self._last_signed < self._every_seconds:
            return
        for partition in [p for p, unsigned in self._unsigned.items() if unsigned]:
            await self._sign(partition)
        self._last_signed = self._monotonic()

    async def _sign(self, partition: int) -> Checkpoint:
        head = self._heads[partition]
        at = format_time(self._clock())
        message = checkpoint_message(
            self._log_name, partition, head.position, head.events, head.log_hash, at
        )
        checkpoint = Checkpoint(
            log=self._log_name,
            partition=partition,
            position=head.position,
            events=head.events,
            log_hash=head.log_hash,
            at=at,
            proxy_hotkey=self._signer.ss58_address,
            signature=sign_hex(self._signer, message),
        )
        self._unsigned[partition] = 0
        await self._store.save_log_checkpoint(checkpoint)
        await publish_all(self._sinks, checkpoint)
        self.latest = checkpoint
        return checkpoint
