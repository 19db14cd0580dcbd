"""Reads of a Kafka log: its heads and checkpoints to their end, a task's stream by offsets.

Reads are read_committed. A broker that is away for a moment (a restart) delays a read, up
to ``read_timeout``, rather than failing it. Both readers fetch only while a read wants
them (paused otherwise), and then briefly: a long poll in flight holds up their next
request on the connection (the broker answers one connection's requests in order).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from events.envelope import Envelope
from events.kafka.checkpoints import SavedCheckpoints
from events.kafka.clients import CATCH_UP_WAIT_MS, ClientSettings, stop_quietly
from events.kafka.heads import Head
from events.kafka.partition_state import PartitionState
from events.log import LogUnavailable

logger = logging.getLogger(__name__)


class MetaReader:
    """The heads and checkpoints topics, read up to their last stable offsets when asked.

    Heads and input positions go into the partition state, checkpoints into the saved ones.
    """

    def __init__(
        self,
        settings: ClientSettings,
        state: PartitionState,
        checkpoints: SavedCheckpoints,
        *,
        read_timeout: float,
        settle_seconds: float,
    ) -> None:
        self._settings = settings
        self._state = state
        self._checkpoints = checkpoints
        self._read_timeout = read_timeout
        self._settle_seconds = settle_seconds
        self._reader: Any = None
        self._probe: Any = None
        self._positions: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        settings = self._settings
        self._reader = settings.consumer("meta", fetch_max_wait_ms=CATCH_UP_WAIT_MS)
        await self._reader.start()
        # Sees the high watermark (undecided transactions included) where the reader
        # sees only the last stable offset: see _stable_ends.
        self._probe = settings.consumer("meta-probe", isolation_level="read_uncommitted")
        await self._probe.start()
        topics = self._state.topics
        meta = [TopicPartition(topics.heads, p) for p in range(topics.partitions)]
        meta.append(TopicPartition(topics.checkpoints, 0))
        self._reader.assign(meta)
        for tp in meta:
            self._reader.seek(tp, 0)
            self._positions[tp] = 0
        self._reader.pause(*meta)

    async def stop(self) -> None:
        clients = (self._reader, self._probe)
        self._reader = self._probe = None
        for client in clients:
            await stop_quietly(client)
        self._positions.clear()

    async def catch_up(self, tps: Sequence[TopicPartition]) -> None:
        """Read the given heads/checkpoints partitions up to their last stable offsets."""
        deadline = time.monotonic() + self._read_timeout
        async with self._lock:
            while True:
                try:
                    await self._read_to_end(tps, deadline)
                    return
                except (KafkaError, LogUnavailable) as error:
                    if time.monotonic() > deadline:
                        raise LogUnavailable(f"could not read {list(tps)}: {error!r}") from error
                    logger.warning("reading %s failed (%r); trying again", list(tps), error)
                    await asyncio.sleep(0.5)

    async def _read_to_end(self, tps: Sequence[TopicPartition], deadline: float) -> None:
        reader = self._reader
        ends = await self._stable_ends(tps, deadline)
        behind = [tp for tp in tps if self._positions[tp] < ends[tp]]
        if not behind:
            return
        reader.resume(*behind)
        try:
            while behind:
                fetched = await reader.getmany(*behind, timeout_ms=CATCH_UP_WAIT_MS)
                for tp, records in fetched.items():
                    for record in records:
                        self._apply(tp.topic, record.key, record.value)
                for tp in behind:
                    self._positions[tp] = await reader.position(tp)
                behind = [tp for tp in behind if self._positions[tp] < ends[tp]]
                if behind and time.monotonic() > deadline:
                    raise LogUnavailable(f"could not read {behind} to their end")
        finally:
            reader.pause(*tps)

    async def _stable_ends(
        self, tps: Sequence[TopicPartition], deadline: float
    ) -> dict[TopicPartition, int]:
        """The last stable offsets, once every transaction begun before now is decided.

        A writer's commit is acknowledged before its markers reach every partition: the
        reply to a command may be read while the heads partition still shows that
        transaction as undecided. Waiting for what was written before this read (for at
        most ``settle_seconds``) means a task another process has accepted is found.
        """
        tps = list(tps)
        timed = self._settings.timed
        stable = await timed(lambda: self._reader.end_offsets(tps))
        written = await timed(lambda: self._probe.end_offsets(tps))
        settle = min(deadline, time.monotonic() + self._settle_seconds)
        while any(stable[tp] < written[tp] for tp in tps) and time.monotonic() < settle:
            await asyncio.sleep(0.002)
            stable = await timed(lambda: self._reader.end_offsets(tps))
        return dict(stable)

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if topic == self._state.topics.heads:
            self._state.apply_heads_record(key, value)
        else:
            self._checkpoints.apply(key, value)


class StreamReader:
    """A task's events, read from its events partition between its head's offsets."""

    def __init__(
        self, settings: ClientSettings, state: PartitionState, *, read_timeout: float
    ) -> None:
        self._settings = settings
        self._state = state
        self._read_timeout = read_timeout
        self._reader: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._reader = self._settings.consumer("reader", fetch_max_wait_ms=CATCH_UP_WAIT_MS)
        await self._reader.start()
        topics = self._state.topics
        tps = [TopicPartition(topics.events, p) for p in range(topics.partitions)]
        self._reader.assign(tps)
        self._reader.pause(*tps)

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        await stop_quietly(reader)

    async def scan(self, task_id: str, partition: int, head: Head) -> list[Envelope]:
        key = task_id.encode()
        tp = TopicPartition(self._state.topics.events, partition)
        found: list[Envelope] = []
        async with self._lock:
            reader = self._reader
            reader.seek(tp, head.first_offset)
            reader.resume(tp)
            try:
                deadline = time.monotonic() + self._read_timeout
                position = head.first_offset
                while position <= head.last_offset:
                    fetched = await reader.getmany(tp, timeout_ms=self._settings.poll_ms)
                    for record in fetched.get(tp, ()):
                        if record.offset > head.last_offset:
                            break
                        if record.key == key:
                            found.append(self._state.placed.envelope(record))
                    position = await reader.position(tp)
                    if position <= head.last_offset and time.monotonic() > deadline:
                        raise LogUnavailable(f"could not read task {task_id} from {tp}")
            finally:
                reader.pause(tp)
        return found
