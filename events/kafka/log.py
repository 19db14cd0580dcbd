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
does not grow with the number of tasks. ``subscribe``: see :mod:`events.kafka.subscriptions`;
``share`` (a consumer group's share of the partitions): see :mod:`events.kafka.shares`;
checkpoints: see :mod:`events.kafka.checkpoints`.
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

from events.envelope import Envelope
from events.kafka.checkpoints import SavedCheckpoints, log_checkpoint_record
from events.kafka.clients import ClientSettings, ensure_topics, stop_quietly
from events.kafka.heads import DEFAULT_HEADS_IN_MEMORY
from events.kafka.partition_state import PartitionState
from events.kafka.reads import MetaReader, StreamReader
from events.kafka.shares import PartitionBatch, StartOf, shared_subscription
from events.kafka.subscriptions import subscription
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
        self._checkpoints = SavedCheckpoints()
        self._meta = MetaReader(
            self.settings,
            self._state,
            self._checkpoints,
            read_timeout=read_timeout,
            settle_seconds=_SETTLE_SECONDS,
        )
        self._streams = StreamReader(self.settings, self._state, read_timeout=read_timeout)
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
        await self._meta.start()
        await self._streams.start()

    async def follow_from_end(
        self, role: str, tps: Sequence[TopicPartition], *, fetch_max_wait_ms: int = 20
    ) -> Any:
        """A started consumer of committed records on ``tps``, positioned at their ends now.

        For followers that care only about what comes next (command replies, status for
        live streams): nothing written after this returns is missed. A follower that never
        pauses, seeks or changes its partitions may let an idle fetch wait longer
        (``fetch_max_wait_ms``): what arrives is answered at once all the same.
        """
        await self.start()
        return await self.settings.consumer_at_end(role, tps, fetch_max_wait_ms)

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
        await self._streams.stop()
        await self._meta.stop()
        plain, self._plain = self._plain, None
        await stop_quietly(plain)
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), 10)

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

    # -- reads ----------------------------------------------------------------------------

    async def _catch_up_heads(self, partitions: Iterable[int]) -> None:
        tps = [TopicPartition(self.topics.heads, p) for p in partitions]
        await self._catch_up_meta(tps)

    async def _catch_up_meta(self, tps: Sequence[TopicPartition]) -> None:
        await self.start()
        await self._meta.catch_up(tps)

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
        stream = await self._streams.scan(task_id, partition, head)
        state.streams.put(task_id, stream)
        return list(stream)

    async def subscribe(
        self, *, after: str | None = None, follow: bool = True, batch_size: int = 1000
    ) -> AsyncIterator[Batch]:
        await self.start()
        batches = subscription(
            self.settings,
            self._state,
            lambda: self._closed,
            after=after,
            follow=follow,
            batch_size=batch_size,
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch

    async def share(
        self, group: str, start_of: StartOf, *, batch_size: int = 1000
    ) -> AsyncIterator[PartitionBatch]:
        """The events of the partitions ``group`` gives this member (see ``shares``)."""
        await self.start()
        batches = shared_subscription(
            self.settings,
            self._state,
            lambda: self._closed,
            group=group,
            start_of=start_of,
            batch_size=batch_size,
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch

    async def stream_heads(self) -> list[StreamHead]:
        await self._catch_up_heads(range(self.topics.partitions))
        return [
            StreamHead(task_id, head.sequence, head.hash)
            for task_id, head in self._state.heads.items()
        ]

    # -- checkpoints ----------------------------------------------------------------------

    async def load_checkpoint(self, consumer: str) -> str | None:
        await self._catch_up_meta([TopicPartition(self.topics.checkpoints, 0)])
        return self._checkpoints.get(consumer)

    async def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        await self.start()
        await self.settings.timed(
            lambda: self._plain.send_and_wait(
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
        described = await self.settings.timed(
            lambda: self._admin.describe_topics([self.topics.events])
        )
        if not described or described[0]["error_code"] != 0:
            raise LogUnavailable(f"topic {self.topics.events} is not available")
