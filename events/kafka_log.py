"""The Kafka event log: the ``EventLog`` port over the package's topics, writer and reads.

**Single writer per partition** (see :mod:`events.kafka.writer`):

- ``KafkaEventLog`` on its own writes every partition under one id (``<prefix>.writer`` by
  default): a restarted process fences its old incarnation, and of two processes configured
  alike only the later one can write (the earlier one's appends raise :class:`WriterFenced`).
- To scale writes out, the command processor (``processors.kafka_runtime``) owns partitions
  through the consumer group of ``<prefix>.commands``, with one writer per partition under
  ``<prefix>.processor.<partition>`` (made by :meth:`KafkaEventLog.writer`): whoever is
  assigned a partition fences its previous owner, dead or merely slow.

Two writers under *different* ids over the same partitions is a misconfiguration this
package cannot detect; the audit would (two events with one sequence break the chain).

**Appends** arriving while a transaction is in flight are gathered into the next one (group
commit); each is checked against the heads first and a refused one fails alone. When a
transaction fails, or its outcome is unknown (the broker went away mid-commit), the writer
starts a new producer under the same id (which settles the old transaction), reads its
heads again and settles each pending append by the head it finds there: its own last event
means done, its expected sequence means try again, anything else is ``StaleVersion``. An
append is therefore never written twice, and its caller learns within ``append_timeout``
whether it landed; only ``LogUnavailable`` after that leaves it open (read the stream).

**Reads**: ``read_stream`` finds the task's head (reading its heads partition to the end
first, unless this process owns the partition) and reads the events partition from the
stream's first to its last offset; recent streams are cached. A restarted process
therefore reads correctly without any local state, and a broker that is away for a moment
delays reads (up to ``read_timeout``) and appends (``append_timeout``). The heads a
process has read live in a :class:`~events.kafka.heads.HeadsTable`: the recently used
ones in memory, the rest in a private temporary file that goes with the process, so memory
does not grow with the number of tasks.
``subscribe`` reads every partition; order holds within a partition, hence within a task,
not across tasks. A subscriber is never handed an event of a partition this process writes
before ``read_stream`` here finds it: a commit becomes visible to consumers a moment before
its writer has recorded it, and the subscriber waits for that (at most ``settle_seconds``).
Without ``follow`` it stops at the last stable offsets as they were when called (including
this process's own commits, whose transaction markers may land a moment after the commit).

**Checkpoints**: see :mod:`events.kafka.checkpoints`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from events.envelope import Envelope
from events.kafka.checkpoints import (
    SavedCheckpoints,
    decode_checkpoint,
    encode_checkpoint,
    log_checkpoint_record,
)
from events.kafka.clients import CATCH_UP_WAIT_MS, ClientSettings, ensure_topics, stop_quietly
from events.kafka.heads import DEFAULT_HEADS_IN_MEMORY, Head
from events.kafka.partition_state import PartitionState
from events.kafka.topics import DEFAULT_PARTITIONS, KafkaTopics
from events.kafka.writer import PendingAppend, StreamWriter, TransactionFailed, WriterFenced
from events.log import Batch, LogUnavailable, StreamHead
from events.log_chain import Checkpoint

logger = logging.getLogger(__name__)

_MAX_GROUP = 500
# How long a subscriber waits for this process's writer to record a commit it can already
# see, and a read for transactions begun before it to be decided.
_SETTLE_SECONDS = 2.0


class KafkaEventLog:
    """The event log on Kafka; see the module docstring for the design.

    Start is lazy (the first operation creates the topics and clients), so the log can be
    built synchronously from settings; ``start()`` may also be awaited explicitly.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "taskledger",
        partitions: int = DEFAULT_PARTITIONS,
        transactional_id: str | None = None,
        append_timeout: float = 60.0,
        read_timeout: float = 30.0,
        transaction_timeout_ms: int = 15_000,
        request_timeout_ms: int = 10_000,
        stream_cache_size: int = 10_000,
        poll_ms: int = 100,
        heads_in_memory: int = DEFAULT_HEADS_IN_MEMORY,
    ) -> None:
        self.settings = ClientSettings(
            bootstrap, topic_prefix, transaction_timeout_ms, request_timeout_ms, poll_ms
        )
        self.transactional_id = transactional_id or f"{topic_prefix}.writer"
        self.append_timeout = append_timeout
        self._state = PartitionState(
            KafkaTopics(topic_prefix, partitions),
            heads_in_memory=heads_in_memory,
            stream_cache_size=stream_cache_size,
            settle_seconds=_SETTLE_SECONDS,
        )
        self.read_timeout = read_timeout
        self._checkpoints = SavedCheckpoints()
        self._meta_reader: Any = None
        self._meta_probe: Any = None
        self._meta_lock = asyncio.Lock()
        self._meta_positions: dict[TopicPartition, int] = {}
        self._events_reader: Any = None
        self._events_lock = asyncio.Lock()
        self._started = False
        self._start_lock = asyncio.Lock()
        self._admin: Any = None
        self._plain: Any = None
        self._writer: StreamWriter | None = None
        self._fenced: WriterFenced | None = None
        self._pending: list[PendingAppend] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> KafkaEventLog:
        """``kafka://HOST:PORT[,HOST:PORT…][?prefix=P&partitions=N&writer=TRANSACTIONAL_ID]``."""
        parsed = urlsplit(url)
        if parsed.scheme != "kafka" or not parsed.netloc:
            raise ValueError(f"not a kafka:// address: {url!r}")
        query = parse_qs(parsed.query)
        unknown = set(query) - {"prefix", "partitions", "writer"}
        if unknown:
            raise ValueError(f"{url!r}: unknown parameters {sorted(unknown)}")
        prefix = query.get("prefix", ["taskledger"])[-1]
        return cls(
            parsed.netloc,
            topic_prefix=prefix,
            partitions=int(query.get("partitions", [str(DEFAULT_PARTITIONS)])[-1]),
            transactional_id=query.get("writer", [None])[-1],
        )

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    @property
    def topics(self) -> KafkaTopics:
        """The topics and their partition count (the existing topics' count, once started)."""
        return self._state.topics

    @property
    def log_name(self) -> str:
        return self.topics.events

    # -- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise RuntimeError("the event log is closed")
            try:
                await self._start()
            except BaseException:
                await self._stop_clients()
                raise
            self._started = True

    async def _start(self) -> None:
        settings = self.settings
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap,
            client_id=f"{settings.prefix}-admin",
            request_timeout_ms=settings.request_timeout_ms,
        )
        await admin.start()
        self._admin = admin
        self._state.topics = await ensure_topics(admin, self.topics)
        self._plain = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap,
            client_id=f"{settings.prefix}-checkpoints",
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=settings.request_timeout_ms,
        )
        await self._plain.start()
        # The two readers fetch only while a read wants them (paused otherwise), and then
        # briefly: a long poll in flight holds up their next request on the connection
        # (the broker answers one connection's requests in order).
        self._meta_reader = settings.consumer("meta", fetch_max_wait_ms=CATCH_UP_WAIT_MS)
        await self._meta_reader.start()
        # Sees the high watermark (undecided transactions included) where the reader
        # sees only the last stable offset: see _stable_ends.
        self._meta_probe = settings.consumer("meta-probe", isolation_level="read_uncommitted")
        await self._meta_probe.start()
        meta = [TopicPartition(self.topics.heads, p) for p in range(self.topics.partitions)]
        meta.append(TopicPartition(self.topics.checkpoints, 0))
        self._meta_reader.assign(meta)
        for tp in meta:
            self._meta_reader.seek(tp, 0)
            self._meta_positions[tp] = 0
        self._meta_reader.pause(*meta)
        self._events_reader = settings.consumer("reader", fetch_max_wait_ms=CATCH_UP_WAIT_MS)
        await self._events_reader.start()
        tps = self._event_partitions()
        self._events_reader.assign(tps)
        self._events_reader.pause(*tps)

    async def follow_from_end(self, role: str, tps: Sequence[TopicPartition]) -> Any:
        """A started consumer of committed records on ``tps``, positioned at their ends now.

        For followers that care only about what comes next (command replies, status for
        live streams): nothing written after this returns is missed.
        """
        await self.start()
        return await self.settings.consumer_at_end(role, tps)

    async def close(self) -> None:
        if self._closed:
            return
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])
        self._closed = True
        writers = {id(writer): writer for writer in self._state.writers()}
        if self._writer is not None:
            writers[id(self._writer)] = self._writer
        for writer in writers.values():
            await writer.stop()
        await self._stop_clients()
        self._state.close()

    async def _stop_clients(self) -> None:
        clients = (self._events_reader, self._meta_reader, self._meta_probe, self._plain)
        self._events_reader = self._meta_reader = self._meta_probe = self._plain = None
        for client in clients:
            await stop_quietly(client)
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), 10)
        self._meta_positions.clear()

    # -- partitions and their writers -----------------------------------------------------

    def partition_of(self, task_id: str) -> int:
        return self._state.partition_of(task_id)

    def input_offset(self, tp: TopicPartition) -> int | None:
        """The position in ``tp`` committed with the transactions of heads partition
        ``tp.partition`` (see :func:`~events.kafka.topics.input_key`), as last read: a
        writer reads its heads partitions when it starts, after fencing whoever wrote them
        before."""
        return self._state.input_offset(tp)

    def writer(self, transactional_id: str, partitions: Iterable[int]) -> StreamWriter:
        """A writer for some partitions (the command processor makes one per partition)."""
        return StreamWriter(
            self.settings, self._state, self._catch_up_heads, transactional_id, partitions
        )

    # -- appends --------------------------------------------------------------------------

    async def append(
        self, task_id: str, expected_sequence: int, events: Sequence[Envelope]
    ) -> None:
        if not events:
            return
        await self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append(PendingAppend(task_id, expected_sequence, events, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:_MAX_GROUP], self._pending[_MAX_GROUP:]
            try:
                await self._commit_group(group)
            except BaseException as error:
                for item in group:
                    item.resolve(error)
                if isinstance(error, asyncio.CancelledError):
                    raise

    async def _commit_group(self, group: list[PendingAppend]) -> None:
        deadline = time.monotonic() + self.append_timeout
        try:
            while group:
                group = await self._try_group(group, deadline)
        except WriterFenced as fenced:
            # For good: taking the partitions back would fence the successor in turn.
            self._fenced = fenced
            writer, self._writer = self._writer, None
            if writer is not None:
                await writer.stop()
            raise

    async def _try_group(self, group: list[PendingAppend], deadline: float) -> list[PendingAppend]:
        """One transaction for the group; returns the appends to try again."""
        writer = await self._own_writer(deadline)
        try:
            outcomes = await writer.commit(group)
        except TransactionFailed as failed:
            logger.warning("event log transaction failed (%s); restarting the writer", failed)
            if time.monotonic() > deadline:
                raise LogUnavailable(f"append not confirmed: {failed}") from failed
            await writer.restart(deadline)
            await self._reload_uncertain(group)
            retry = []
            for item in group:
                settled = writer.settle(item)
                if settled is False:
                    retry.append(item)
                else:
                    item.resolve(None if settled is True else settled)
            return retry
        for item, outcome in zip(group, outcomes, strict=True):
            item.resolve(outcome)
        return []

    async def _reload_uncertain(self, group: Sequence[PendingAppend]) -> None:
        """Read the streams whose head moved past an append, so ``settle`` can tell whose."""
        for item in group:
            head = self._state.heads.get(item.task_id)
            if head is not None and head.sequence >= item.events[-1].sequence:
                await self.read_stream(item.task_id)

    async def _own_writer(self, deadline: float) -> StreamWriter:
        if self._fenced is not None:
            raise WriterFenced(f"this log was fenced by a newer writer: {self._fenced}")
        if self._writer is None:
            writer = StreamWriter(
                self.settings, self._state, self._catch_up_heads, self.transactional_id
            )
            await writer.restart(deadline)
            self._writer = writer
        return self._writer

    def _event_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.topics.events, p) for p in range(self.topics.partitions)]

    async def _catch_up_heads(self, partitions: Iterable[int]) -> None:
        tps = [TopicPartition(self.topics.heads, p) for p in partitions]
        await self._catch_up_meta(tps)

    async def _catch_up_meta(self, tps: Sequence[TopicPartition]) -> None:
        """Read the given heads/checkpoints partitions up to their last stable offsets.

        A broker that is away for a moment (a restart) delays the read, up to
        ``read_timeout``, rather than failing it.
        """
        await self.start()
        deadline = time.monotonic() + self.read_timeout
        async with self._meta_lock:
            while True:
                try:
                    await self._read_meta_to_end(tps, deadline)
                    return
                except (KafkaError, LogUnavailable) as error:
                    if time.monotonic() > deadline:
                        raise LogUnavailable(f"could not read {list(tps)}: {error!r}") from error
                    logger.warning("reading %s failed (%r); trying again", list(tps), error)
                    await asyncio.sleep(0.5)

    async def _read_meta_to_end(self, tps: Sequence[TopicPartition], deadline: float) -> None:
        reader = self._meta_reader
        ends = await self._stable_ends(tps, deadline)
        behind = [tp for tp in tps if self._meta_positions[tp] < ends[tp]]
        if not behind:
            return
        reader.resume(*behind)
        try:
            while behind:
                # Short waits: every transaction ends in a commit marker, and a fetch that
                # brings only a marker moves the position without returning a record, so
                # getmany would sit out its whole timeout at the end of every partition.
                fetched = await reader.getmany(*behind, timeout_ms=CATCH_UP_WAIT_MS)
                for tp, records in fetched.items():
                    for record in records:
                        self._apply_meta(tp.topic, record.key, record.value)
                for tp in behind:
                    self._meta_positions[tp] = await reader.position(tp)
                behind = [tp for tp in behind if self._meta_positions[tp] < ends[tp]]
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
        stable = await self.settings.timed(self._meta_reader.end_offsets(tps))
        written = await self.settings.timed(self._meta_probe.end_offsets(tps))
        settle = min(deadline, time.monotonic() + _SETTLE_SECONDS)
        while any(stable[tp] < written[tp] for tp in tps) and time.monotonic() < settle:
            await asyncio.sleep(0.002)
            stable = await self.settings.timed(self._meta_reader.end_offsets(tps))
        return dict(stable)

    def _apply_meta(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if topic == self.topics.heads:
            self._state.apply_heads_record(key, value)
        else:
            self._checkpoints.apply(key, value)

    async def read_stream(self, task_id: str) -> list[Envelope]:
        await self.start()
        state = self._state
        partition = state.partition_of(task_id)
        if not state.owns(partition):
            await self._catch_up_heads([partition])
        head = state.heads.get(task_id)
        if head is None:
            return []
        cached = state.streams.get(task_id, head.sequence)
        if cached is not None:
            return list(cached)
        stream = await self._scan_stream(task_id, partition, head)
        state.streams.put(task_id, stream)
        return list(stream)

    async def _scan_stream(self, task_id: str, partition: int, head: Head) -> list[Envelope]:
        key = task_id.encode()
        tp = TopicPartition(self.topics.events, partition)
        found: list[Envelope] = []
        async with self._events_lock:
            reader = self._events_reader
            reader.seek(tp, head.first_offset)
            reader.resume(tp)
            try:
                deadline = time.monotonic() + self.read_timeout
                position = head.first_offset
                while position <= head.last_offset:
                    fetched = await reader.getmany(tp, timeout_ms=self.settings.poll_ms)
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

    async def subscribe(
        self, *, after: str | None = None, follow: bool = True, batch_size: int = 1000
    ) -> AsyncIterator[Batch]:
        await self.start()
        start = decode_checkpoint(after)
        tps = self._event_partitions()
        consumer = self.settings.consumer("subscriber")
        await consumer.start()
        try:
            consumer.assign(tps)
            positions: dict[int, int] = {}
            for tp in tps:
                positions[tp.partition] = start.get(tp.partition, 0)
                consumer.seek(tp, positions[tp.partition])
            if follow:
                batches = self._follow(consumer, tps, positions, batch_size)
            else:
                batches = self._read_to_end(consumer, tps, positions, batch_size)
            async for batch in batches:
                yield batch
        finally:
            await stop_quietly(consumer)

    async def _follow(
        self,
        consumer: Any,
        tps: Sequence[TopicPartition],
        positions: dict[int, int],
        batch_size: int,
    ) -> AsyncIterator[Batch]:
        """Whatever any partition has, as it comes: per-partition order only."""
        while not self._closed:
            fetched = await consumer.getmany(
                timeout_ms=self.settings.poll_ms, max_records=batch_size
            )
            events: list[Envelope] = []
            for tp, records in fetched.items():
                await self._state.recorded(tp.partition, records[-1].offset)
                events.extend(self._state.placed.envelope(record) for record in records)
                positions[tp.partition] = records[-1].offset + 1
            if events:
                yield Batch(tuple(events), encode_checkpoint(positions))

    async def _read_to_end(
        self,
        consumer: Any,
        tps: Sequence[TopicPartition],
        positions: dict[int, int],
        batch_size: int,
    ) -> AsyncIterator[Batch]:
        """Partition after partition up to the end offsets of now: the same order every time.

        A fixed order makes a replay reproducible, and a checkpoint taken anywhere in one
        read resumes exactly where that read was, whatever the batch sizes.
        """
        ends = await self.settings.timed(consumer.end_offsets(list(tps)))
        consumer.pause(*tps)
        for tp in tps:
            # This process's own commits count even before their markers are written.
            target = max(ends[tp], self._state.own_end(tp.partition))
            if positions[tp.partition] >= target:
                continue
            consumer.resume(tp)
            while positions[tp.partition] < target and not self._closed:
                fetched = await consumer.getmany(
                    tp, timeout_ms=CATCH_UP_WAIT_MS, max_records=batch_size
                )  # short: the last fetch may bring a commit marker alone (_read_meta_to_end)
                records = [r for r in fetched.get(tp, ()) if r.offset < target]
                positions[tp.partition] = max(
                    positions[tp.partition], min(await consumer.position(tp), target)
                )
                if records:
                    yield Batch(
                        tuple(self._state.placed.envelope(record) for record in records),
                        encode_checkpoint(positions),
                    )
            consumer.pause(tp)

    async def stream_heads(self) -> list[StreamHead]:
        await self._catch_up_heads(range(self.topics.partitions))
        return [
            StreamHead(task_id, head.sequence, head.hash)
            for task_id, head in self._state.heads.items()
        ]

    # -- checkpoints ----------------------------------------------------------------------

    # -- checkpoints ----------------------------------------------------------------------

    async def load_checkpoint(self, consumer: str) -> str | None:
        await self._catch_up_meta([TopicPartition(self.topics.checkpoints, 0)])
        return self._checkpoints.get(consumer)

    async def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        await self.start()
        await self.settings.timed(
            self._plain.send_and_wait(
                self.topics.checkpoints, value=checkpoint.encode(), key=consumer.encode()
            )
        )
        self._checkpoints.put(consumer, checkpoint)

    async def save_log_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self.save_checkpoint(*log_checkpoint_record(checkpoint))

    async def log_checkpoints(
        self, after: int | None = None, limit: int | None = None
    ) -> list[Checkpoint]:
        await self._catch_up_meta([TopicPartition(self.topics.checkpoints, 0)])
        return self._checkpoints.log_checkpoints(after, limit)

    # -- health ---------------------------------------------------------------------------

    async def check(self) -> None:
        if self._fenced is not None:
            raise WriterFenced(f"this log was fenced by a newer writer: {self._fenced}")
        await self.start()
        described = await self.settings.timed(self._admin.describe_topics([self.topics.events]))
        if not described or described[0]["error_code"] != 0:
            raise LogUnavailable(f"topic {self.topics.events} is not available")
