"""The single writer of some partitions: a transactional producer and their heads.

Kafka has no conditional append, so optimistic concurrency holds only while one writer at
a time appends to a partition and knows every head in it. Transactional ids give both: a
:class:`StreamWriter` owns a set of partitions under one transactional id, and starting
its producer (InitProducerId) fences every earlier producer with that id: their open
transaction is aborted and any later commit of theirs fails with ``ProducerFenced``; a
commit they had already asked for is completed first. So the heads the writer reads
*after* that are complete, and from then on it alone changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from events.codec import GENESIS_HASH, canonical
from events.envelope import Envelope
from events.kafka.clients import ClientSettings
from events.kafka.heads import Head
from events.kafka.partition_state import PartitionState
from events.kafka.topics import input_key
from events.log import BrokenChain, LogUnavailable, StaleVersion, check_continuation

logger = logging.getLogger(__name__)


class WriterFenced(Exception):
    """Another writer took over this one's partitions (same transactional id, started later)."""


class TransactionFailed(Exception):
    """A transaction failed or its outcome is unknown: restart the writer, then look."""


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

    def resolve(self, outcome: BaseException | None) -> None:
        """Tell whoever awaits the append how it went (once; later outcomes are ignored)."""
        if self.future is None or self.future.done():
            return
        if outcome is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(outcome)


# Reads the given heads partitions to their end (into the partition state).
CatchUpHeads = Callable[[Iterable[int]], Awaitable[None]]


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
        self,
        settings: ClientSettings,
        state: PartitionState,
        catch_up_heads: CatchUpHeads,
        transactional_id: str,
        partitions: Iterable[int] | None = None,
    ) -> None:
        self._settings = settings
        self._state = state
        self._catch_up_heads = catch_up_heads
        self.transactional_id = transactional_id
        self._partitions = None if partitions is None else frozenset(partitions)
        self._producer: Any = None
        self.fenced = False
        # Where the next event of each events partition lands, as the last commit left it.
        self._next_offsets: dict[int, int] = {}

    @property
    def partitions(self) -> frozenset[int]:
        if self._partitions is None:
            return frozenset(range(self._state.topics.partitions))
        return self._partitions

    async def start(self) -> None:
        settings = self._settings
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap,
            client_id=f"{self.transactional_id}-writer",
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            transaction_timeout_ms=settings.transaction_timeout_ms,
            request_timeout_ms=settings.request_timeout_ms,
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
            async with asyncio.timeout(settings.request_timeout_ms / 1000 * 2):
                await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
            raise
        self._producer = producer
        await self._catch_up_heads(self.partitions)
        self._state.claim(self.partitions, self)

    async def stop(self) -> None:
        self._state.release(self.partitions, self)
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
        head = self._state.heads.get(item.task_id)
        sequence = head.sequence if head else 0
        last = item.events[-1]
        if sequence >= last.sequence and self._state.stream_has(item.task_id, last):
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
        state = self._state
        overlay: dict[str, tuple[int, str]] = {}  # heads as this transaction leaves them
        outcomes: list[BaseException | None] = []
        accepted: list[PendingAppend] = []
        for item in appends:
            partition = state.partition_of(item.task_id)
            if partition not in self.partitions:
                outcomes.append(ValueError(f"{self.transactional_id} does not own {partition}"))
                continue
            head = state.heads.get(item.task_id)
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
            async with asyncio.timeout(self._settings.transaction_seconds):
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
        state.committed(written, accepted)
        for tp, offset in (offsets or {}).items():
            state.record_input(tp, offset)
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
        state = self._state
        topics = state.topics
        await producer.begin_transaction()
        try:
            sent: list[list[asyncio.Future[Any]]] = []
            for item in accepted:
                partition = state.partition_of(item.task_id)
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
            partition = state.partition_of(item.task_id)
            # The commit marker takes the offset after the transaction's last event.
            self._next_offsets[partition] = offsets_of_item[-1] + 2
            state.placed.remember(partition, offsets_of_item, item.events)
        return heads

    def _guess_offsets(self, accepted: Sequence[PendingAppend]) -> list[list[int]] | None:
        """Where each append's events will land, if every partition's next offset is known."""
        following = dict(self._next_offsets)
        guessed: list[list[int]] = []
        for item in accepted:
            partition = self._state.partition_of(item.task_id)
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
            before = heads.get(item.task_id) or self._state.heads.get(item.task_id)
            first = before.first_offset if before else offsets[0]
            last = item.events[-1]
            heads[item.task_id] = Head(last.sequence, last.hash, first, offsets[-1])
        return heads

    async def _send_heads(self, heads: Mapping[str, Head]) -> None:
        for task_id, head in heads.items():
            await self._producer.send(
                self._state.topics.heads,
                value=head.encode(),
                key=task_id.encode(),
                partition=self._state.partition_of(task_id),
            )


class _MisplacedGuess(Exception):
    """The events did not land where the writer expected: its heads would be wrong."""
