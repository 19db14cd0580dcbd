"""The command processor on Kafka: decide, append and commit the input, in one transaction.

Commands arrive on ``<prefix>.commands`` as JSON, keyed by task id, in the partition of
their task (:class:`~processors.kafka.publisher.CommandPublisher` writes them). Processors
share the partitions through one consumer group; for each partition it is assigned, a
processor starts a :class:`~events.kafka.writer.StreamWriter` under the transactional id
``<prefix>.processor.<partition>``. Starting it fences whoever had the partition before
(their open transaction is aborted, their late commits refused), and only then are the
partition's heads and committed input offset read, so the new owner continues exactly
where the last committed transaction left off.

A poll's commands for one partition become one transaction, planned by
:class:`~processors.kafka.planner.Planner` through the command core: the events decided
(appended after the heads the writer holds), each changed task's status document on
``<prefix>.status`` (compacted, keyed by task id), undecodable commands on
``<prefix>.deadletter``, and the input offset — as a record in the partition's heads
(:func:`~events.kafka.topics.input_key`), which the next owner reads after fencing anyway,
rather than a consumer-group commit, which would cost two more round trips per
transaction. The group's offsets are still committed now and then, after the fact, so
that the usual tools show the consumer lag. It commits or vanishes as a whole: after a
crash the next owner decides the same commands again against the same state, so no command
is applied twice or lost. (faust-streaming's exactly-once mode does not commit the input
offsets atomically with every output; hence aiokafka's transactional producer here.)

A command the decider refuses (a DomainError) is consumed and counted, with no event; a
command that cannot be decoded or sealed goes to the dead-letter topic with the reason in
its headers, and the partition keeps flowing.

Each command also gets a reply on ``<prefix>.replies`` in the same transaction (its
outcome or its refusal): :class:`~processors.kafka.bus.KafkaCommandBus` waits for it, so
the HTTP edge and the other processors run commands here as if they decided them locally.

A process that owns a task's partition need not send the task's commands through the
broker at all: :meth:`KafkaCommandProcessor.execute_local` queues them for the partition's
next transaction, where they are decided in line with the commands from the topic and
answered when it commits (this process's dispatcher, deadline keeper and work sender run
their commands so, as their tasks are those of the partitions owned here). Such a command
has no input offset and no reply record; if its transaction fails it is answered with
:class:`~processors.kafka.replies.NoReply`, as a command whose reply never came.

Every processor process dispatches the tasks of the partitions it owns: its ``follower``
(:class:`~processors.kafka.owned.OwnedPartitions`) is told of every change of ownership and
of the events of every committed transaction, and its ``distributor`` (the dispatcher) may
distribute a task in the transaction that creates it. The owner of partition 0 also leads
(:mod:`processors.kafka.leadership`): it runs what runs once in a deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from events import LogUnavailable
from events.kafka import (
    DEFAULT_PARTITIONS,
    KafkaEventLog,
    StreamWriter,
    TransactionFailed,
    WriterFenced,
)
from processors.command_core import AnyCommand, CommandRequest
from processors.commands import new_id
from processors.kafka.leadership import Leadership
from processors.kafka.owned import FollowsPartitions
from processors.kafka.planner import (
    AwaitedReply,
    DistributesAtCreation,
    Plan,
    Planner,
    settle_distributions,
)
from processors.kafka.replies import CommandReply, NoReply

logger = logging.getLogger(__name__)

# How often the group's committed offsets catch up with the transactions' (for lag tools).
_LAG_REPORT_SECONDS = 5.0


@dataclass
class ProcessorStats:
    commands: int = 0
    transactions: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    recoveries: int = 0


class _Partitions(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, processor: KafkaCommandProcessor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._processor._revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._processor._assign(assigned)


class KafkaCommandProcessor:
    def __init__(
        self,
        log: KafkaEventLog,
        *,
        group_id: str | None = None,
        batch_size: int = 200,
        cache_size: int = 20_000,
        ids: Callable[[], str] = new_id,
        recovery_seconds: float = 120.0,
        session_timeout_ms: int = 6_000,
        on_leadership: Callable[[bool], Awaitable[None]] | None = None,
        follower: FollowsPartitions | None = None,
    ) -> None:
        self.log = log
        self._leadership = Leadership(on_leadership)
        # This process's dispatcher, told what is owned here and what was committed there.
        self._follower = follower
        self._planner = Planner(log, cache_size=cache_size, ids=ids)
        self.group_id = group_id or f"{log.topics.prefix}.processor"
        self.stats = ProcessorStats()
        self._batch_size = batch_size
        self._recovery_seconds = recovery_seconds
        self._session_timeout_ms = session_timeout_ms
        self._consumer: Any = None
        self._writers: dict[int, StreamWriter] = {}
        self._next: dict[int, int] = {}
        # Partitions whose writer a newer owner fenced: left alone until the next rebalance,
        # or two processes would take a partition from each other in turn.
        self._fenced: set[int] = set()
        self._local: dict[int, list[AwaitedReply]] = {}
        self._local_waiting = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    @property
    def leading(self) -> bool:
        """Whether this process leads now (see :mod:`processors.kafka.leadership`)."""
        return self._leadership.leading

    @property
    def distributor(self) -> DistributesAtCreation | None:
        """This process's dispatcher while it runs here (see :class:`Planner`)."""
        return self._planner.distributor

    @distributor.setter
    def distributor(self, distributor: DistributesAtCreation | None) -> None:
        self._planner.distributor = distributor

    def stop(self) -> None:
        self._stopping.set()
        self._local_waiting.set()

    def execute_local(
        self,
        task_id: str,
        command: AnyCommand,
        *,
        actor: str,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> asyncio.Future[CommandReply] | None:
        """Queue a command for the next transaction of its partition, if this process owns
        that partition now; None otherwise (send it through the commands topic then)."""
        partition = self.log.partition_of(task_id)
        if self._stopping.is_set() or partition not in self._writers:
            return None
        request = CommandRequest(task_id, command, actor, causation_id, correlation_id, new_id())
        answer: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._local.setdefault(partition, []).append(AwaitedReply(request, answer))
        self._local_waiting.set()
        return answer

    def _drop_local(self, partitions: Iterable[int], reason: str) -> None:
        """Answer the queued local commands of ``partitions``: they will not be decided here."""
        for partition in list(partitions):
            for local in self._local.pop(partition, ()):
                if not local.answer.done():
                    local.answer.set_exception(NoReply(reason))

    async def run(self) -> None:
        """Consume commands until ``stop()``; partitions come and go with the group."""
        await self.log.start()
        topics = self.log.topics
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.log.bootstrap,
            client_id=f"{topics.prefix}-processor",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(500, self._session_timeout_ms // 6),
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        self._consumer = consumer
        consumer.subscribe([topics.commands], listener=_Partitions(self))
        reported = time.monotonic()
        try:
            while not self._stopping.is_set():
                if time.monotonic() - reported > _LAG_REPORT_SECONDS:
                    reported = time.monotonic()
                    await self._report_positions()
                fetched = await self._poll(consumer)
                local, self._local = self._local, {}
                work = {tp.partition: (tp, records) for tp, records in fetched.items()}
                for partition in local:
                    work.setdefault(partition, (TopicPartition(topics.commands, partition), []))
                if work:
                    # Partitions have their own writers: their transactions run side by side.
                    # A rebalance waits for the lock, so never for half a poll.
                    async with self._lock:
                        done = await asyncio.gather(
                            *(
                                self._process(tp, records, local.get(partition, ()))
                                for partition, (tp, records) in work.items()
                            ),
                            return_exceptions=True,
                        )
                    for failure in done:
                        if isinstance(failure, BaseException):
                            raise failure
        finally:
            async with self._lock:
                self._drop_local(list(self._local), "the command processor stopped")
                if self._follower is not None:
                    self._follower.owned(())
                await self._leadership.resign()
                for writer in self._writers.values():
                    await writer.stop()
                self._writers.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 15)

    async def _poll(self, consumer: Any) -> dict[TopicPartition, list[Any]]:
        """The next commands from the topic; returns early when local commands wait."""
        if self._local:
            return dict(await consumer.getmany(timeout_ms=0, max_records=self._batch_size))
        self._local_waiting.clear()
        fetching = asyncio.ensure_future(
            consumer.getmany(timeout_ms=100, max_records=self._batch_size)
        )
        waking = asyncio.ensure_future(self._local_waiting.wait())
        try:
            await asyncio.wait((fetching, waking), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waking.cancel()
            if not fetching.done():
                # Cancelled while waiting for records, before taking any: nothing is lost.
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetching
        if fetching.cancelled():
            return {}
        return dict(fetching.result())

    async def _report_positions(self) -> None:
        """Commit the positions already committed with the transactions to the group too,
        outside any transaction: only for the tools that show a group's lag."""
        async with self._lock:
            topic = self.log.topics.commands
            positions = {
                TopicPartition(topic, partition): offset
                for partition, offset in self._next.items()
                if partition in self._writers
            }
            if positions:
                with contextlib.suppress(KafkaError):
                    await self._consumer.commit(positions)

    # -- partitions -----------------------------------------------------------------------

    async def _follow(self) -> None:
        """Tell the dispatcher and the leadership which partitions are owned here now."""
        if self._follower is not None:
            self._follower.owned(self._writers)
        await self._leadership.follow(self._writers)

    async def _assign(self, assigned: Sequence[TopicPartition]) -> None:
        async with self._lock:
            self._fenced.clear()
            for tp in assigned:
                try:
                    await self._take(tp)
                except (KafkaError, LogUnavailable, TimeoutError) as error:
                    # Taken again at its next poll (see _process).
                    logger.warning("partition %d: not taken yet (%r)", tp.partition, error)
            logger.info("owning partitions %s", sorted(self._writers))
            await self._follow()

    async def _take(self, tp: TopicPartition) -> None:
        partition = tp.partition
        writer = self._writers.get(partition) or self.log.writer(
            f"{self.log.topics.prefix}.processor.{partition}", [partition]
        )
        try:
            # Fence the previous owner first: its committed offset is final only after that.
            await writer.restart(time.monotonic() + self._recovery_seconds)
        except WriterFenced:
            logger.warning("partition %d: a newer owner fenced this processor", partition)
            self._writers.pop(partition, None)
            self._fenced.add(partition)
            return
        self._writers[partition] = writer
        self._planner.reset(partition)
        await self._rewind(tp)

    async def _rewind(self, tp: TopicPartition) -> None:
        """Seek to the committed input offset: the one the transactions carry (in the heads
        partition, read when the writer started), or the group's, whichever is further
        on (a deployment that committed through the group before; offsets only grow)."""
        consumer = self._consumer
        positions = (self.log.input_offset(tp), await consumer.committed(tp))
        known = [position for position in positions if position is not None]
        committed = max(known) if known else None
        if committed is None:
            await consumer.seek_to_beginning(tp)
            self._next[tp.partition] = 0
        else:
            consumer.seek(tp, committed)
            self._next[tp.partition] = committed

    async def _revoke(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._lock:
            self._fenced.clear()
            for tp in revoked:
                writer = self._writers.pop(tp.partition, None)
                if writer is not None:
                    await writer.stop()
                self._planner.drop(tp.partition)
                self._next.pop(tp.partition, None)
            self._drop_local([tp.partition for tp in revoked], "the partition moved on")
            await self._follow()

    # -- processing -----------------------------------------------------------------------

    async def _process(
        self, tp: TopicPartition, records: Sequence[Any], local: Sequence[AwaitedReply] = ()
    ) -> None:
        """One partition's share of a poll, as one transaction (the caller holds the lock)."""
        try:
            answers = await self._transact(tp, records, local)
        except BaseException:
            self._fail_local(local, "its transaction failed")
            raise
        for answer, reply in answers:
            if not answer.done():
                answer.set_result(reply)
        self._fail_local(local, "its partition is not owned here any more")

    def _fail_local(self, local: Sequence[AwaitedReply], reason: str) -> None:
        for command in local:
            if not command.answer.done():
                command.answer.set_exception(
                    NoReply(f"command {command.request.command_id}: {reason}")
                )

    async def _transact(
        self, tp: TopicPartition, records: Sequence[Any], local: Sequence[AwaitedReply]
    ) -> list[tuple[asyncio.Future[CommandReply], CommandReply]]:
        """Decide and commit; the answers to the local commands once committed."""
        writer = self._writers.get(tp.partition)
        if writer is None:
            if tp.partition not in self._fenced and tp in self._consumer.assignment():
                # Its start failed during the rebalance: try again.
                with contextlib.suppress(KafkaError, LogUnavailable, TimeoutError):
                    await self._take(tp)
                await self._follow()
            return []  # else revoked meanwhile
        records = [r for r in records if r.offset >= self._next.get(tp.partition, 0)]
        if not records and not local:
            return []
        offsets = {tp: records[-1].offset + 1} if records else {}
        for attempt in range(2):
            plan = await self._planner.plan(tp.partition, records, local)
            try:
                outcomes = await self._commit(writer, plan, offsets)
            except TransactionFailed as failed:
                await self._recover(tp, writer, failed)
                return []
            except WriterFenced:
                logger.warning("partition %d: fenced by a newer owner", tp.partition)
                self._writers.pop(tp.partition, None)
                self._fenced.add(tp.partition)
                await writer.stop()
                await self._follow()
                return []
            if all(outcome is None for outcome in outcomes):
                self._planner.committed(tp.partition, plan)
                if self._follower is not None:
                    self._follower.committed([e for a in plan.appends for e in a.events])
                if records:
                    self._next[tp.partition] = offsets[tp]
                self.stats.commands += len(records) + len(local)
                self.stats.transactions += 1
                self.stats.rejected += plan.rejected
                self.stats.dead_lettered += plan.poisoned
                return plan.answers
            # The writer's heads disagree with what was decided on: decide again.
            logger.warning("partition %d: stale state (%s)", tp.partition, outcomes)
            self._planner.reset(tp.partition)
            if attempt:
                raise next(o for o in outcomes if o is not None)
        return []

    async def _commit(
        self, writer: StreamWriter, plan: Plan, offsets: Mapping[TopicPartition, int]
    ) -> list[BaseException | None]:
        """Commit the plan; the dispatcher hears whether the distributions it decided at
        creation were committed (the work goes out) or not (their tasks' creations were
        not either, and are decided again)."""
        committed = False
        try:
            outcomes = await writer.commit(
                plan.appends, records=plan.records, offsets=offsets, all_or_nothing=True
            )
            committed = all(outcome is None for outcome in outcomes)
            return outcomes
        finally:
            settle_distributions(plan, committed=committed)

    async def _recover(self, tp: TopicPartition, writer: StreamWriter, failed: Exception) -> None:
        """After a failed or unknown transaction: new producer, heads and offset re-read."""
        logger.warning("partition %d: transaction failed (%s); recovering", tp.partition, failed)
        self.stats.recoveries += 1
        self._planner.reset(tp.partition)
        deadline = time.monotonic() + self._recovery_seconds
        while True:
            try:
                await writer.restart(deadline)
                await self._rewind(tp)
                return
            except WriterFenced:
                self._writers.pop(tp.partition, None)
                self._fenced.add(tp.partition)
                await self._follow()
                return
            except (KafkaError, LogUnavailable, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise
                logger.warning("partition %d: recovery failed (%r)", tp.partition, error)
                await asyncio.sleep(0.5)


async def run_processor(
    bootstrap: str, *, topic_prefix: str = "taskledger", partitions: int = DEFAULT_PARTITIONS
) -> None:
    """One processor process: runs until SIGTERM or SIGINT."""
    log = KafkaEventLog(bootstrap, topic_prefix=topic_prefix, partitions=partitions)
    processor = KafkaCommandProcessor(log)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, processor.stop)
    try:
        await processor.run()
    finally:
        await log.close()
