"""The Kafka event log: events keyed by task id, appended in Kafka transactions.

The topics, and which partition holds a task: see :mod:`events.kafka.topics`.

**Single writer per partition.** Kafka has no conditional append, so optimistic
concurrency holds only while one writer at a time appends to a partition and knows every
head in it. Transactional ids give both:

- A :class:`StreamWriter` owns a set of partitions under one transactional id. Starting its
  producer (InitProducerId) fences every earlier producer with that id: their open
  transaction is aborted and any later commit of theirs fails with ``ProducerFenced``; a
  commit they had already asked for is completed first. So the heads the writer reads
  *after* that are complete, and from then on it alone changes them.
- ``KafkaEventLog`` on its own writes every partition under one id (``<prefix>.writer`` by
  default): a restarted process fences its old incarnation, and of two processes configured
  alike only the later one can write (the earlier one's appends raise :class:`WriterFenced`).
- To scale writes out, the command processor (``processors.kafka_runtime``) owns partitions
  through the consumer group of ``<prefix>.commands``, with one writer per partition under
  ``<prefix>.processor.<partition>``: whoever is assigned a partition fences its previous
  owner, dead or merely slow.

Two writers under *different* ids over the same partitions is a misconfiguration this
module cannot detect; the audit would (two events with one sequence break the chain).

**Appends** arriving while a transaction is in flight are gathered into the next one (group
commit); each is checked against the heads first and a refused one fails alone. When a
transaction fails, or its outcome is unknown (the broker went away mid-commit), the writer
starts a new producer under the same id (which settles the old transaction), reads its
heads again and settles each pending append by the head it finds there: its own last event
means done, its expected sequence means try again, anything else is ``StaleVersion``. An
append is therefore never written twice, and its caller learns within ``append_timeout``
whether it landed; only ``LogUnavailable`` after that leaves it open (read the stream).

**Reads** are read_committed. ``read_stream`` finds the task's head (reading its heads
partition to the end first, unless this process owns the partition) and reads the events
partition from the stream's first to its last offset; recent streams are cached. A
restarted process therefore reads correctly without any local state, and a broker that is
away for a moment delays reads (up to ``read_timeout``) and appends (``append_timeout``).
The heads a process has read live in a :class:`~events.kafka.heads.HeadsTable`: the
recently used ones in memory, the rest in a private temporary file that goes with the
process, so memory does not grow with the number of tasks.
``subscribe`` reads every partition; order holds within a partition, hence within a task,
not across tasks. A subscriber is never handed an event of a partition this process writes
before ``read_stream`` here finds it: a commit becomes visible to consumers a moment before
its writer has recorded it, and the subscriber waits for that (at most ``settle_seconds``).
Without ``follow`` it stops at the last stable offsets as they were when called (including this
process's own commits, whose transaction markers may land a moment after the commit).

**Checkpoints**: see :mod:`events.kafka.checkpoints`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, ProducerFenced

from events.codec import GENESIS_HASH, canonical, decode
from events.envelope import Envelope
from events.kafka.checkpoints import (
    SavedCheckpoints,
    decode_checkpoint,
    encode_checkpoint,
    log_checkpoint_record,
)
from events.kafka.heads import DEFAULT_HEADS_IN_MEMORY, Head, HeadsTable
from events.kafka.recent import PlacedEvents, StreamCache
from events.kafka.topics import (
    DEFAULT_PARTITIONS,
    INPUT_PREFIX,
    KafkaTopics,
    input_key,
    partition_for,
)
from events.log import (
    Batch,
    BrokenChain,
    LogUnavailable,
    StaleVersion,
    StreamHead,
    check_continuation,
)
from events.log_chain import Checkpoint

logger = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_MAX_GROUP = 500
_CATCH_UP_WAIT_MS = 5


class WriterFenced(Exception):
    """Another writer took over this one's partitions (same transactional id, started later)."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to publish in the same transaction as some appends (status, dead letters)."""

    topic: str
    key: bytes
    value: bytes | None
    partition: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class PendingAppend:
    task_id: str
    expected: int
    events: Sequence[Envelope]
    future: asyncio.Future[None] | None = field(default=None, repr=False)


def _settle(item: PendingAppend, outcome: BaseException | None) -> None:
    if item.future is None or item.future.done():
        return
    if outcome is None:
        item.future.set_result(None)
    else:
        item.future.set_exception(outcome)


class TransactionFailed(Exception):
    """A transaction failed or its outcome is unknown: restart the writer, then look."""


class StreamWriter:
    """The single writer of some partitions: a transactional producer and their heads.

    ``commit`` runs one transaction: the accepted appends' events and new heads, any extra
    records, and optionally input offsets (see :func:`input_key`). It returns, per append,
    None (written) or the refusal (StaleVersion, BrokenChain); it raises
    ``TransactionFailed`` when nothing can be said about the transaction, after which
    ``restart`` and ``settle`` tell what happened. With ``all_or_nothing`` a single refusal
    means no transaction at all.

    A head records the offsets of its stream's events, which the broker assigns. As the only
    writer of its events partitions, the writer knows where the next event will land once
    one transaction has shown it (its last event's offset, plus one for the commit marker),
    so events and heads go out together in one produce request; the placed offsets are
    checked before the commit, and a wrong guess aborts the transaction and is tried again
    the slow way (events first, heads once their offsets are known).
    """

    def __init__(
        self, log: KafkaEventLog, transactional_id: str, partitions: Iterable[int] | None = None
    ) -> None:
        self._log = log
        self.transactional_id = transactional_id
        self._partitions = None if partitions is None else frozenset(partitions)
        self._producer: Any = None
        self.fenced = False
        # Where the next event of each events partition lands, as the last commit left it.
        self._next_offsets: dict[int, int] = {}

    @property
    def partitions(self) -> frozenset[int]:
        if self._partitions is None:
            return frozenset(range(self._log.topics.partitions))
        return self._partitions

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._log.bootstrap,
            client_id=f"{self.transactional_id}-writer",
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            transaction_timeout_ms=self._log.transaction_timeout_ms,
            request_timeout_ms=self._log.request_timeout_ms,
            max_request_size=4 * 1024 * 1024,
            # One batch per partition and transaction: a full batch makes ``send`` wait for
            # a produce round trip, and every partition added after it costs another
            # AddPartitionsToTxn round trip.
            max_batch_size=1024 * 1024,
            # A transaction begun right after the last one commits is often told to wait
            # for that one's markers (CONCURRENT_TRANSACTIONS): retry in 10 ms, not 100.
            retry_backoff_ms=10,
        )
        try:
            async with asyncio.timeout(self._log.request_timeout_ms / 1000 * 2):
                await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
            raise
        self._producer = producer
        await self._log._catch_up_heads(self.partitions)
        self._log._claim(self.partitions, self)

    async def stop(self) -> None:
        self._log._release(self.partitions, self)
        self._next_offsets.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def restart(self, deadline: float) -> None:
        """A new producer under the same id (settling the last transaction), heads re-read."""
        await self.stop()
        delay = 0.1
        while True:
            try:
                await self.start()
                return
            except ProducerFenced as fenced:
                raise WriterFenced(self.transactional_id) from fenced
            except (KafkaError, TimeoutError, OSError) as error:
                if time.monotonic() + delay > deadline:
                    raise LogUnavailable(f"writer {self.transactional_id}: {error!r}") from error
                logger.warning("writer %s: restart failed (%r)", self.transactional_id, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def settle(self, item: PendingAppend) -> bool | StaleVersion:
        """After a restart: True if the append is in the log, False to try it again."""
        head = self._log._heads.get(item.task_id)
        sequence = head.sequence if head else 0
        last = item.events[-1]
        if sequence >= last.sequence and self._log._stream_has(item.task_id, last):
            return True
        if sequence == item.expected:
            return False
        return StaleVersion(item.task_id, item.expected, sequence)

    async def commit(
        self,
        appends: Sequence[PendingAppend],
        *,
        records: Sequence[OutRecord] = (),
        offsets: Mapping[TopicPartition, int] | None = None,
        all_or_nothing: bool = False,
    ) -> list[BaseException | None]:
        """``offsets``: input positions to commit with the transaction, in the heads
        partition of the same number (see :func:`input_key`); the writer must own it."""
        if self.fenced:
            raise WriterFenced(self.transactional_id)
        log = self._log
        overlay: dict[str, tuple[int, str]] = {}  # heads as this transaction leaves them
        outcomes: list[BaseException | None] = []
        accepted: list[PendingAppend] = []
        for item in appends:
            partition = log.partition_of(item.task_id)
            if partition not in self.partitions:
                outcomes.append(ValueError(f"{self.transactional_id} does not own {partition}"))
                continue
            head = log._heads.get(item.task_id)
            known = (head.sequence, head.hash) if head else (0, GENESIS_HASH)
            sequence, hash = overlay.get(item.task_id, known)
            try:
                check_continuation(item.task_id, sequence, hash, item.expected, item.events)
            except (StaleVersion, BrokenChain) as refused:
                outcomes.append(refused)
                continue
            overlay[item.task_id] = (item.events[-1].sequence, item.events[-1].hash)
            accepted.append(item)
            outcomes.append(None)
        if all_or_nothing and len(accepted) < len(appends):
            return outcomes
        if not accepted and not records and not offsets:
            return outcomes
        for tp in offsets or ():
            if tp.partition not in self.partitions:
                raise ValueError(f"{self.transactional_id} does not own {tp.partition}")
        try:
            async with asyncio.timeout(log.transaction_seconds):
                try:
                    written = await self._transact(accepted, records, offsets or {}, guess=True)
                except _MisplacedGuess:
                    written = await self._transact(accepted, records, offsets or {}, guess=False)
        except ProducerFenced as fenced:
            self.fenced = True
            raise WriterFenced(self.transactional_id) from fenced
        except (KafkaError, TimeoutError, AssertionError) as error:
            # AssertionError: aiokafka's transaction state machine after a lost connection.
            raise TransactionFailed(repr(error)) from error
        log._committed(written, accepted)
        for tp, offset in (offsets or {}).items():
            log._inputs[f"{tp.topic}:{tp.partition}"] = offset
        return outcomes

    async def _transact(
        self,
        accepted: Sequence[PendingAppend],
        records: Sequence[OutRecord],
        offsets: Mapping[TopicPartition, int],
        *,
        guess: bool,
    ) -> dict[str, Head]:
        producer = self._producer
        if producer is None:
            raise KafkaError("writer not started")
        topics = self._log.topics
        await producer.begin_transaction()
        try:
            sent: list[list[asyncio.Future[Any]]] = []
            for item in accepted:
                partition = self._log.partition_of(item.task_id)
                key = item.task_id.encode()
                futures = []
                for envelope in item.events:
                    futures.append(
                        await producer.send(
                            topics.events,
                            value=envelope.body,
                            key=key,
                            partition=partition,
                            headers=[("hash", envelope.hash.encode())],
                        )
                    )
                sent.append(futures)
            for record in records:
                await producer.send(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    partition=record.partition,
                    headers=list(record.headers),
                )
            for tp, offset in offsets.items():
                await producer.send(
                    topics.heads,
                    value=canonical({"offset": offset}),
                    key=input_key(tp),
                    partition=tp.partition,
                )
            guessed = self._guess_offsets(accepted) if guess else None
            if guessed is not None:
                heads = self._heads_at(accepted, guessed)
                await self._send_heads(heads)
            placed = [[m.offset for m in await asyncio.gather(*futures)] for futures in sent]
            if guessed is None:
                heads = self._heads_at(accepted, placed)
                await self._send_heads(heads)
            elif placed != guessed:
                raise _MisplacedGuess(self.transactional_id)
            await producer.commit_transaction()
        except BaseException:
            self._next_offsets.clear()  # an aborted transaction took offsets too
            if not producer._txn_manager.is_fatal_error():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.abort_transaction(), 5)
            raise
        for item, offsets_of_item in zip(accepted, placed, strict=True):
            partition = self._log.partition_of(item.task_id)
            # The commit marker takes the offset after the transaction's last event.
            self._next_offsets[partition] = offsets_of_item[-1] + 2
            self._log._placed.remember(partition, offsets_of_item, item.events)
        return heads

    def _guess_offsets(self, accepted: Sequence[PendingAppend]) -> list[list[int]] | None:
        """Where each append's events will land, if every partition's next offset is known."""
        following = dict(self._next_offsets)
        guessed: list[list[int]] = []
        for item in accepted:
            partition = self._log.partition_of(item.task_id)
            first = following.get(partition)
            if first is None:
                return None
            following[partition] = first + len(item.events)
            guessed.append(list(range(first, first + len(item.events))))
        return guessed

    def _heads_at(
        self, accepted: Sequence[PendingAppend], placed: Sequence[Sequence[int]]
    ) -> dict[str, Head]:
        heads: dict[str, Head] = {}
        for item, offsets in zip(accepted, placed, strict=True):
            before = heads.get(item.task_id) or self._log._heads.get(item.task_id)
            first = before.first_offset if before else offsets[0]
            last = item.events[-1]
            heads[item.task_id] = Head(last.sequence, last.hash, first, offsets[-1])
        return heads

    async def _send_heads(self, heads: Mapping[str, Head]) -> None:
        for task_id, head in heads.items():
            await self._producer.send(
                self._log.topics.heads,
                value=head.encode(),
                key=task_id.encode(),
                partition=self._log.partition_of(task_id),
            )


class _MisplacedGuess(Exception):
    """The events did not land where the writer expected: its heads would be wrong."""


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
        self.bootstrap = bootstrap
        self.topics = KafkaTopics(topic_prefix, partitions)
        self.transactional_id = transactional_id or f"{topic_prefix}.writer"
        self.append_timeout = append_timeout
        self.read_timeout = read_timeout
        self.transaction_timeout_ms = transaction_timeout_ms
        self.request_timeout_ms = request_timeout_ms
        # Give up on a transaction well before the coordinator would abort it (which bumps
        # the producer epoch and looks exactly like being fenced).
        self.transaction_seconds = transaction_timeout_ms / 1000 / 2
        self.settle_seconds = 2.0
        self._poll_ms = poll_ms
        self._started = False
        self._start_lock = asyncio.Lock()
        self._admin: Any = None
        self._plain: Any = None
        self._meta_reader: Any = None
        self._meta_probe: Any = None
        self._meta_lock = asyncio.Lock()
        self._meta_positions: dict[TopicPartition, int] = {}
        self._events_reader: Any = None
        self._events_lock = asyncio.Lock()
        self._heads = HeadsTable(heads_in_memory)
        self._inputs: dict[str, int] = {}  # "<topic>:<partition>" -> committed position
        self._checkpoints = SavedCheckpoints()
        self._owners: dict[int, StreamWriter] = {}
        self._own_end: dict[int, int] = {}
        # Per events partition, the offset after the last event the known heads cover.
        self._heads_end: dict[int, int] = {}
        self._cache = StreamCache(stream_cache_size)
        # Seconds' worth: the subscribers in this process are moments behind its commits.
        self._placed = PlacedEvents(8192)
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
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.topics.prefix}-admin",
            request_timeout_ms=self.request_timeout_ms,
        )
        await admin.start()
        self._admin = admin
        await self._ensure_topics()
        self._plain = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.topics.prefix}-checkpoints",
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=self.request_timeout_ms,
        )
        await self._plain.start()
        # The two readers fetch only while a read wants them (paused otherwise), and then
        # briefly: a long poll in flight holds up their next request on the connection
        # (the broker answers one connection's requests in order).
        self._meta_reader = self._consumer("meta", fetch_max_wait_ms=_CATCH_UP_WAIT_MS)
        await self._meta_reader.start()
        # Sees the high watermark (undecided transactions included) where the reader
        # sees only the last stable offset: see _stable_ends.
        self._meta_probe = self._consumer("meta-probe", isolation_level="read_uncommitted")
        await self._meta_probe.start()
        meta = [TopicPartition(self.topics.heads, p) for p in range(self.topics.partitions)]
        meta.append(TopicPartition(self.topics.checkpoints, 0))
        self._meta_reader.assign(meta)
        for tp in meta:
            self._meta_reader.seek(tp, 0)
            self._meta_positions[tp] = 0
        self._meta_reader.pause(*meta)
        self._events_reader = self._consumer("reader", fetch_max_wait_ms=_CATCH_UP_WAIT_MS)
        await self._events_reader.start()
        tps = self._event_partitions()
        self._events_reader.assign(tps)
        self._events_reader.pause(*tps)

    def _consumer(
        self,
        role: str,
        isolation_level: str = "read_committed",
        fetch_max_wait_ms: int | None = None,
    ) -> Any:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.topics.prefix}-{role}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation_level,
            fetch_max_wait_ms=self._poll_ms if fetch_max_wait_ms is None else fetch_max_wait_ms,
            request_timeout_ms=self.request_timeout_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def follow_from_end(self, role: str, tps: Sequence[TopicPartition]) -> Any:
        """A started consumer of committed records on ``tps``, positioned at their ends now.

        For followers that care only about what comes next (command replies, status for
        live streams): nothing written after this returns is missed.
        """
        await self.start()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.topics.prefix}-{role}",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        try:
            consumer.assign(list(tps))
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # resolved now, not at the first fetch
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _ensure_topics(self) -> None:
        response = await self._admin.create_topics(self.topics.specs())
        for topic, code, *_ in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise KafkaError(f"creating topic {topic}: error code {code}")
        described = await self._describe(self.topics.keyed())
        counts = {topic: len(partitions) for topic, partitions in described.items()}
        if len(set(counts.values())) != 1:
            raise KafkaError(f"the keyed topics must have equal partition counts: {counts}")
        count = next(iter(counts.values()))
        if count != self.topics.partitions:
            # The topics exist already: their layout decides where tasks live.
            logger.info("topics %s have %d partitions; using that", self.topics.prefix, count)
            self.topics = KafkaTopics(self.topics.prefix, count)

    async def _describe(self, topics: Iterable[str]) -> dict[str, list[int]]:
        wanted = list(topics)
        for _ in range(50):
            found = {
                entry["topic"]: sorted(p["partition"] for p in entry["partitions"])
                for entry in await self._admin.describe_topics(wanted)
                if entry["error_code"] == 0 and entry["partitions"]
            }
            if len(found) == len(wanted):
                return found
            await asyncio.sleep(0.1)
        raise KafkaError(f"topics not available: {sorted(set(wanted) - set(found))}")

    async def close(self) -> None:
        if self._closed:
            return
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])
        self._closed = True
        writers = {id(writer): writer for writer in self._owners.values()}
        if self._writer is not None:
            writers[id(self._writer)] = self._writer
        for writer in writers.values():
            await writer.stop()
        await self._stop_clients()
        self._heads.close()

    async def _stop_clients(self) -> None:
        clients = (self._events_reader, self._meta_reader, self._meta_probe, self._plain)
        self._events_reader = self._meta_reader = self._meta_probe = self._plain = None
        for client in clients:
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 10)
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), 10)
        self._meta_positions.clear()

    # -- ownership, used by writers -------------------------------------------------------

    def partition_of(self, task_id: str) -> int:
        return partition_for(task_id, self.topics.partitions)

    def input_offset(self, tp: TopicPartition) -> int | None:
        """The position in ``tp`` committed with the transactions of heads partition
        ``tp.partition`` (see :func:`input_key`), as last read: a writer reads its heads
        partitions when it starts, after fencing whoever wrote them before."""
        return self._inputs.get(f"{tp.topic}:{tp.partition}")

    def writer(self, transactional_id: str, partitions: Iterable[int]) -> StreamWriter:
        """A writer for some partitions (the command processor makes one per partition)."""
        return StreamWriter(self, transactional_id, partitions)

    def _claim(self, partitions: Iterable[int], writer: StreamWriter) -> None:
        for partition in partitions:
            self._owners[partition] = writer

    def _release(self, partitions: Iterable[int], writer: StreamWriter) -> None:
        for partition in partitions:
            if self._owners.get(partition) is writer:
                del self._owners[partition]

    def _committed(self, heads: Mapping[str, Head], appends: Sequence[PendingAppend]) -> None:
        for task_id, head in heads.items():
            self._set_head(task_id, head)
            partition = self.partition_of(task_id)
            self._own_end[partition] = max(self._own_end.get(partition, 0), head.last_offset + 1)
        for item in appends:
            self._cache.extend(item.task_id, item.events)

    def _set_head(self, task_id: str, head: Head) -> None:
        # Applied in offset order, but a writer's own commit may be known before the topic
        # shows it: never step a head back.
        current = self._heads.get(task_id)
        if current is None or head.sequence >= current.sequence:
            self._heads.put(task_id, head)
        partition = self.partition_of(task_id)
        if head.last_offset >= self._heads_end.get(partition, 0):
            self._heads_end[partition] = head.last_offset + 1

    async def _recorded(self, partition: int, offset: int) -> None:
        """Until the heads cover ``offset`` of a partition this process writes.

        Such an event is visible only once its transaction committed, and a committed
        transaction of this process's writer is recorded (``_committed``) as soon as the
        writer's coroutine runs on: a few turns of the loop. Events of partitions written
        elsewhere are read with their heads (``read_stream``), so they need no wait.
        """
        deadline = time.monotonic() + self.settle_seconds
        while (
            partition in self._owners
            and self._heads_end.get(partition, 0) <= offset
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.001)

    def _stream_has(self, task_id: str, envelope: Envelope) -> bool:
        """Whether the cached stream holds this very event (read it first)."""
        head = self._heads.get(task_id)
        stream = self._cache.get(task_id, head.sequence) if head else None
        if stream is None or len(stream) < envelope.sequence:
            return False
        return stream[envelope.sequence - 1].hash == envelope.hash

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
                    _settle(item, error)
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
                    _settle(item, None if settled is True else settled)
            return retry
        for item, outcome in zip(group, outcomes, strict=True):
            _settle(item, outcome)
        return []

    async def _reload_uncertain(self, group: Sequence[PendingAppend]) -> None:
        """Read the streams whose head moved past an append, so ``settle`` can tell whose."""
        for item in group:
            head = self._heads.get(item.task_id)
            if head is not None and head.sequence >= item.events[-1].sequence:
                await self.read_stream(item.task_id)

    async def _own_writer(self, deadline: float) -> StreamWriter:
        if self._fenced is not None:
            raise WriterFenced(f"this log was fenced by a newer writer: {self._fenced}")
        if self._writer is None:
            writer = StreamWriter(self, self.transactional_id)
            await writer.restart(deadline)
            self._writer = writer
        return self._writer

    # -- reads ----------------------------------------------------------------------------

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
                fetched = await reader.getmany(*behind, timeout_ms=_CATCH_UP_WAIT_MS)
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
        stable = await self._timed(self._meta_reader.end_offsets(tps))
        written = await self._timed(self._meta_probe.end_offsets(tps))
        settle = min(deadline, time.monotonic() + self.settle_seconds)
        while any(stable[tp] < written[tp] for tp in tps) and time.monotonic() < settle:
            await asyncio.sleep(0.002)
            stable = await self._timed(self._meta_reader.end_offsets(tps))
        return dict(stable)

    def _apply_meta(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if topic == self.topics.heads:
            if key.startswith(INPUT_PREFIX):
                if value is not None:
                    self._inputs[key[len(INPUT_PREFIX) :].decode()] = int(decode(value)["offset"])
            elif value is not None:
                self._set_head(key.decode(), Head.decode(value))
        else:
            self._checkpoints.apply(key, value)

    async def _timed(self, operation: Any) -> Any:
        try:
            async with asyncio.timeout(self.request_timeout_ms / 1000 * 2):
                return await operation
        except TimeoutError as error:
            raise LogUnavailable("the broker did not answer in time") from error

    async def read_stream(self, task_id: str) -> list[Envelope]:
        await self.start()
        partition = self.partition_of(task_id)
        if partition not in self._owners:
            await self._catch_up_heads([partition])
        head = self._heads.get(task_id)
        if head is None:
            return []
        cached = self._cache.get(task_id, head.sequence)
        if cached is not None:
            return list(cached)
        stream = await self._scan_stream(task_id, partition, head)
        self._cache.put(task_id, stream)
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
                    fetched = await reader.getmany(tp, timeout_ms=self._poll_ms)
                    for record in fetched.get(tp, ()):
                        if record.offset > head.last_offset:
                            break
                        if record.key == key:
                            found.append(self._placed.envelope(record))
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
        consumer = self._consumer("subscriber")
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
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 10)

    async def _follow(
        self,
        consumer: Any,
        tps: Sequence[TopicPartition],
        positions: dict[int, int],
        batch_size: int,
    ) -> AsyncIterator[Batch]:
        """Whatever any partition has, as it comes: per-partition order only."""
        while not self._closed:
            fetched = await consumer.getmany(timeout_ms=self._poll_ms, max_records=batch_size)
            events: list[Envelope] = []
            for tp, records in fetched.items():
                await self._recorded(tp.partition, records[-1].offset)
                events.extend(self._placed.envelope(record) for record in records)
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
        ends = await self._timed(consumer.end_offsets(list(tps)))
        consumer.pause(*tps)
        for tp in tps:
            # This process's own commits count even before their markers are written.
            target = max(ends[tp], self._own_end.get(tp.partition, 0))
            if positions[tp.partition] >= target:
                continue
            consumer.resume(tp)
            while positions[tp.partition] < target and not self._closed:
                fetched = await consumer.getmany(
                    tp, timeout_ms=_CATCH_UP_WAIT_MS, max_records=batch_size
                )  # short: the last fetch may bring a commit marker alone (_read_meta_to_end)
                records = [r for r in fetched.get(tp, ()) if r.offset < target]
                positions[tp.partition] = max(
                    positions[tp.partition], min(await consumer.position(tp), target)
                )
                if records:
                    yield Batch(
                        tuple(self._placed.envelope(record) for record in records),
                        encode_checkpoint(positions),
                    )
            consumer.pause(tp)

    async def stream_heads(self) -> list[StreamHead]:
        await self._catch_up_heads(range(self.topics.partitions))
        return [
            StreamHead(task_id, head.sequence, head.hash) for task_id, head in self._heads.items()
        ]

    # -- checkpoints ----------------------------------------------------------------------

    async def load_checkpoint(self, consumer: str) -> str | None:
        await self._catch_up_meta([TopicPartition(self.topics.checkpoints, 0)])
        return self._checkpoints.get(consumer)

    async def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        await self.start()
        await self._timed(
            self._plain.send_and_wait(
                self.topics.checkpoints, value=checkpoint.encode(), key=consumer.encode()
            )
        )
        self._checkpoints.put(consumer, checkpoint)

    # -- the log chain's signed checkpoints (see events.kafka.checkpoints) ----------------

    @property
    def log_name(self) -> str:
        return self.topics.events

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
        described = await self._timed(self._admin.describe_topics([self.topics.events]))
        if not described or described[0]["error_code"] != 0:
            raise LogUnavailable(f"topic {self.topics.events} is not available")
