"""The command processor on Kafka: decide, append and commit the input, in one transaction.

Commands arrive on ``<prefix>.commands`` as JSON, keyed by task id, in the partition of
their task (:class:`CommandPublisher` writes them). Processors share the partitions
through one consumer group; for each partition it is assigned, a processor starts a
:class:`~events.kafka_log.StreamWriter` under the transactional id
``<prefix>.processor.<partition>``. Starting it fences whoever had the partition before
(their open transaction is aborted, their late commits refused), and only then are the
partition's heads and committed input offset read, so the new owner continues exactly
where the last committed transaction left off.

A poll's commands for one partition become one transaction: the events the pure decider
made (appended after the heads the writer holds), each changed task's status document on
``<prefix>.status`` (compacted, keyed by task id), undecodable commands on
``<prefix>.deadletter``, and the input offset — as a record in the partition's heads
(:func:`~events.kafka_log.input_key`), which the next owner reads after fencing anyway,
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
outcome or its refusal): :class:`~processors.command_bus.KafkaCommandBus` waits for it, so
the HTTP edge and the other processors run commands here as if they decided them locally.

A process that owns a task's partition need not send the task's commands through the
broker at all: :meth:`KafkaCommandProcessor.execute_local` queues them for the partition's
next transaction, where they are decided in line with the commands from the topic and
answered when it commits (the leader's dispatcher, deadline keeper and work sender run
their commands so while their tasks are local). Such a command has no input offset and no
reply record; if its transaction fails it is answered with
:class:`~processors.command_replies.NoReply`, as a command whose reply never came.

Besides the tasks' commands, :class:`~processors.ledger_commands.RecordLedgerEvent` appends
one of the proxy's own facts (a ``WeightsSubmitted``) to a ledger stream: sealed here after
the stream's head, in the same transactions, so the leader's weights processor appends
through the partition's one writer wherever that partition is owned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError

from aggregates import (
    ArchiveTask,
    CancelTask,
    CheckDeadlines,
    Command,
    CreateTask,
    DistributeTask,
    DomainError,
    Evaluate,
    InvalidCommand,
    RecordFailure,
    RecordResponse,
    TaskState,
    decide,
    fold,
)
from events import GENESIS_HASH, Envelope, LogUnavailable, canonical
from events.codec import decode
from events.envelope import seal
from events.kafka import (
    DEFAULT_PARTITIONS,
    KafkaEventLog,
    OutRecord,
    PendingAppend,
    StreamWriter,
    TransactionFailed,
    WriterFenced,
)
from events.ledger import UnknownLedgerEvent, is_ledger_stream, ledger_payload
from processors.command_replies import CommandReply, NoReply
from processors.commands import Outcome, new_id, seal_events
from processors.dispatcher import NAME as DISPATCHER
from processors.ledger_commands import RecordLedgerEvent
from projections.status_document import status_document

logger = logging.getLogger(__name__)

COMMAND_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        CreateTask,
        DistributeTask,
        RecordResponse,
        RecordFailure,
        CheckDeadlines,
        Evaluate,
        CancelTask,
        ArchiveTask,
        RecordLedgerEvent,
    )
}
# A task's commands, and the one that appends to a ledger stream (see ledger_commands).
AnyCommand = Command | RecordLedgerEvent
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(cls) for name, cls in COMMAND_TYPES.items()
}


# Whoever owns this partition of the commands also runs the processors that run once in a
# deployment (dispatcher, deadline keeper, retention, projections). Ownership moves on a
# rebalance or a crash and the new owner resumes from their checkpoints. Should two leaders
# overlap for a moment, their commands are still decided by each task's single owner, so
# none is applied twice (a miner may be sent the same work twice, as after any restart).
LEADER_PARTITION = 0
# How often the group's committed offsets catch up with the transactions' (for lag tools).
_LAG_REPORT_SECONDS = 5.0


class PoisonCommand(ValueError):
    """A record on the commands topic that is not a command this processor can run."""


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """One command as it travels on ``<prefix>.commands``."""

    command_id: str
    task_id: str
    actor: str
    command: AnyCommand
    correlation_id: str | None = None
    causation_id: str | None = None

    def encode(self) -> bytes:
        name = type(self.command).__name__
        return canonical(
            {
                "id": self.command_id,
                "task_id": self.task_id,
                "actor": self.actor,
                "correlation_id": self.correlation_id,
                "causation_id": self.causation_id,
                "type": name,
                "command": _ADAPTERS[name].dump_python(self.command, mode="json"),
            }
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> CommandMessage:
        if raw is None:
            raise PoisonCommand("a record without a value")
        try:
            fields = decode(raw)
            adapter = _ADAPTERS.get(fields["type"])
            if adapter is None:
                raise PoisonCommand(f"unknown command type {fields['type']!r}")
            command = adapter.validate_python(fields["command"])
            message = cls(
                command_id=str(fields["id"]),
                task_id=str(fields["task_id"]),
                actor=str(fields["actor"]),
                command=command,
                correlation_id=fields.get("correlation_id"),
                causation_id=fields.get("causation_id"),
            )
        except PoisonCommand:
            raise
        except (ValueError, TypeError, KeyError, ValidationError) as error:
            raise PoisonCommand(f"undecodable command: {error}") from error
        if command.now.tzinfo is None:
            raise PoisonCommand("command time without a timezone")
        return message


class CommandPublisher:
    """Puts commands on the commands topic, in their task's partition (for edges and tests)."""

    def __init__(self, log: KafkaEventLog) -> None:
        self._log = log
        self._producer: Any = None

    async def start(self) -> None:
        await self._log.start()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._log.bootstrap,
            client_id=f"{self._log.topics.prefix}-commands",
            enable_idempotence=True,
            acks="all",
        )
        await self._producer.start()

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def submit(
        self,
        task_id: str,
        command: AnyCommand,
        *,
        actor: str,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> str:
        message = CommandMessage(
            command_id or new_id(), task_id, actor, command, correlation_id, causation_id
        )
        await self._producer.send_and_wait(
            self._log.topics.commands,
            value=message.encode(),
            key=task_id.encode(),
            partition=self._log.partition_of(task_id),
        )
        return message.command_id


class DistributesAtCreation(Protocol):
    """The dispatcher, where it runs in the process that decides a task's creation."""

    async def distribution_at_creation(self, state: TaskState) -> DistributeTask | None: ...

    def distributed_at_creation(self, command: DistributeTask, outcome: Outcome | None) -> None: ...


@dataclass(frozen=True, slots=True)
class _LocalCommand:
    """A command from this process for a partition it owns, and whoever waits for it."""

    message: CommandMessage
    answer: asyncio.Future[CommandReply]


@dataclass(frozen=True, slots=True)
class _Known:
    state: TaskState
    hash: str


@dataclass
class _Plan:
    """What one poll of a partition turns into: one transaction."""

    appends: list[PendingAppend] = field(default_factory=list)
    records: list[OutRecord] = field(default_factory=list)
    states: dict[str, _Known] = field(default_factory=dict)
    answers: list[tuple[asyncio.Future[CommandReply], CommandReply]] = field(default_factory=list)
    # Distributions decided with their task's creation, and their outcomes (see
    # KafkaCommandProcessor.distributor), told to the dispatcher once the transaction ends.
    distributed: list[tuple[DistributesAtCreation, DistributeTask, Outcome]] = field(
        default_factory=list
    )
    # Ledger streams appended to in this plan: (sequence, hash) of their new heads.
    ledger: dict[str, tuple[int, str]] = field(default_factory=dict)
    rejected: int = 0
    poisoned: int = 0


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
    ) -> None:
        self.log = log
        # The owner of partition 0 is the leader (see ``LEADER_PARTITION``).
        self._on_leadership = on_leadership
        self.leading = False
        # Set while this process's dispatcher runs: it may distribute a task in the very
        # transaction that creates it, sparing the task a trip through the events topic
        # to the dispatcher and a transaction of its own (a third of the median time
        # from intake to DISTRIBUTED under load).
        self.distributor: DistributesAtCreation | None = None
        self.group_id = group_id or f"{log.topics.prefix}.processor"
        self.stats = ProcessorStats()
        self._batch_size = batch_size
        self._cache_size = cache_size
        self._ids = ids
        self._recovery_seconds = recovery_seconds
        self._session_timeout_ms = session_timeout_ms
        self._consumer: Any = None
        self._writers: dict[int, StreamWriter] = {}
        self._next: dict[int, int] = {}
        self._known: dict[int, OrderedDict[str, _Known]] = {}
        # Partitions whose writer a newer owner fenced: left alone until the next rebalance,
        # or two processes would take a partition from each other in turn.
        self._fenced: set[int] = set()
        self._local: dict[int, list[_LocalCommand]] = {}
        self._local_waiting = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

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
        message = CommandMessage(new_id(), task_id, actor, command, correlation_id, causation_id)
        answer: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._local.setdefault(partition, []).append(_LocalCommand(message, answer))
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
                await self._lead(False)
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
            await self._lead(LEADER_PARTITION in self._writers)

    async def _lead(self, leading: bool) -> None:
        """Tell the process whether it leads now: it owns (and fenced for) partition 0."""
        if leading == self.leading:
            return
        self.leading = leading
        logger.info("leading: %s", leading)
        if self._on_leadership is not None:
            await self._on_leadership(leading)

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
        self._known[partition] = OrderedDict()
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
                self._known.pop(tp.partition, None)
                self._next.pop(tp.partition, None)
            self._drop_local([tp.partition for tp in revoked], "the partition moved on")
            await self._lead(LEADER_PARTITION in self._writers)

    # -- processing -----------------------------------------------------------------------

    async def _process(
        self, tp: TopicPartition, records: Sequence[Any], local: Sequence[_LocalCommand] = ()
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

    def _fail_local(self, local: Sequence[_LocalCommand], reason: str) -> None:
        for command in local:
            if not command.answer.done():
                command.answer.set_exception(
                    NoReply(f"command {command.message.command_id}: {reason}")
                )

    async def _transact(
        self, tp: TopicPartition, records: Sequence[Any], local: Sequence[_LocalCommand]
    ) -> list[tuple[asyncio.Future[CommandReply], CommandReply]]:
        """Decide and commit; the answers to the local commands once committed."""
        writer = self._writers.get(tp.partition)
        if writer is None:
            if tp.partition not in self._fenced and tp in self._consumer.assignment():
                # Its start failed during the rebalance: try again.
                with contextlib.suppress(KafkaError, LogUnavailable, TimeoutError):
                    await self._take(tp)
                await self._lead(LEADER_PARTITION in self._writers)
            return []  # else revoked meanwhile
        records = [r for r in records if r.offset >= self._next.get(tp.partition, 0)]
        if not records and not local:
            return []
        offsets = {tp: records[-1].offset + 1} if records else {}
        for attempt in range(2):
            plan = await self._plan(tp.partition, records, local)
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
                await self._lead(LEADER_PARTITION in self._writers)
                return []
            if all(outcome is None for outcome in outcomes):
                self._remember(tp.partition, plan.states)
                if records:
                    self._next[tp.partition] = offsets[tp]
                self.stats.commands += len(records) + len(local)
                self.stats.transactions += 1
                self.stats.rejected += plan.rejected
                self.stats.dead_lettered += plan.poisoned
                return plan.answers
            # The writer's heads disagree with what was decided on: decide again.
            logger.warning("partition %d: stale state (%s)", tp.partition, outcomes)
            self._known[tp.partition] = OrderedDict()
            if attempt:
                raise next(o for o in outcomes if o is not None)
        return []

    async def _commit(
        self, writer: StreamWriter, plan: _Plan, offsets: Mapping[TopicPartition, int]
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
            self._settle_distributions(plan, committed=committed)

    @staticmethod
    def _settle_distributions(plan: _Plan, *, committed: bool) -> None:
        distributed, plan.distributed = plan.distributed, []
        for distributor, command, outcome in distributed:
            distributor.distributed_at_creation(command, outcome if committed else None)

    async def _recover(self, tp: TopicPartition, writer: StreamWriter, failed: Exception) -> None:
        """After a failed or unknown transaction: new producer, heads and offset re-read."""
        logger.warning("partition %d: transaction failed (%s); recovering", tp.partition, failed)
        self.stats.recoveries += 1
        self._known[tp.partition] = OrderedDict()
        deadline = time.monotonic() + self._recovery_seconds
        while True:
            try:
                await writer.restart(deadline)
                await self._rewind(tp)
                return
            except WriterFenced:
                self._writers.pop(tp.partition, None)
                self._fenced.add(tp.partition)
                await self._lead(LEADER_PARTITION in self._writers)
                return
            except (KafkaError, LogUnavailable, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise
                logger.warning("partition %d: recovery failed (%r)", tp.partition, error)
                await asyncio.sleep(0.5)

    async def _plan(
        self, partition: int, records: Sequence[Any], local: Sequence[_LocalCommand] = ()
    ) -> _Plan:
        plan = _Plan()
        try:
            await self._plan_commands(plan, partition, records, local)
        except BaseException:
            self._settle_distributions(plan, committed=False)
            raise
        return plan

    async def _plan_commands(
        self, plan: _Plan, partition: int, records: Sequence[Any], local: Sequence[_LocalCommand]
    ) -> None:
        topics = self.log.topics
        for record in records:
            message: CommandMessage | None = None
            try:
                message = CommandMessage.decode(record.value)
                if self.log.partition_of(message.task_id) != partition:
                    raise PoisonCommand(f"task {message.task_id} belongs to another partition")
                reply = await self._decide(plan, partition, message)
            except PoisonCommand as poison:
                plan.poisoned += 1
                plan.records.append(self._dead_letter(record, str(poison)))
                if message is not None:
                    refusal = InvalidCommand(str(poison))
                    plan.records.append(
                        self._reply(CommandReply(message.command_id, error=refusal))
                    )
                continue
            plan.records.append(self._reply(reply))
        for command in local:
            try:
                reply = await self._decide(plan, partition, command.message)
            except PoisonCommand as poison:
                reply = CommandReply(command.message.command_id, error=InvalidCommand(str(poison)))
            plan.answers.append((command.answer, reply))
        for task_id, known in plan.states.items():
            plan.records.append(
                OutRecord(
                    topics.status,
                    task_id.encode(),
                    canonical(status_document(known.state)),
                    partition,
                )
            )

    async def _decide(self, plan: _Plan, partition: int, message: CommandMessage) -> CommandReply:
        """Decide one command against the state so far, adding its events to the plan."""
        if isinstance(message.command, RecordLedgerEvent):
            return await self._decide_ledger(plan, message, message.command)
        known = plan.states.get(message.task_id) or await self._load(partition, message.task_id)
        try:
            decided = decide(known.state, message.command)
        except DomainError as refused:
            logger.info("command %s refused: %s", message.command_id, refused)
            plan.rejected += 1
            return CommandReply(message.command_id, error=refused)
        if not decided:
            return CommandReply(message.command_id, known.state)
        state, sealed = self._seal(known, message, decided)
        plan.appends.append(PendingAppend(message.task_id, known.state.version, sealed))
        plan.states[message.task_id] = _Known(state, sealed[-1].hash)
        if isinstance(message.command, CreateTask) and self.distributor is not None:
            await self._distribute_at_creation(plan, partition, message, state)
        return CommandReply(message.command_id, state, tuple(sealed))

    async def _decide_ledger(
        self, plan: _Plan, message: CommandMessage, command: RecordLedgerEvent
    ) -> CommandReply:
        """One of the proxy's own facts, sealed after its ledger stream's head: no task, no
        status document; refused (as a poison command) unless the ledger knows its type."""
        stream_id = message.task_id
        if not is_ledger_stream(stream_id):
            raise PoisonCommand(f"{stream_id} is not a ledger stream")
        head = plan.ledger.get(stream_id)
        if head is None:
            stream = await self.log.read_stream(stream_id)
            head = (stream[-1].sequence, stream[-1].hash) if stream else (0, GENESIS_HASH)
        try:
            envelope = seal(
                event_id=self._ids(),
                task_id=stream_id,
                sequence=head[0] + 1,
                type=command.type,
                version=command.version,
                occurred_at=command.now,
                actor=message.actor,
                data=command.data,
                prev_hash=head[1],
                causation_id=message.causation_id or message.command_id,
                correlation_id=message.correlation_id,
            )
            ledger_payload(envelope)
        except (UnknownLedgerEvent, ValueError, TypeError) as error:
            raise PoisonCommand(f"not a ledger event: {error}") from error
        plan.appends.append(PendingAppend(stream_id, head[0], [envelope]))
        plan.ledger[stream_id] = (envelope.sequence, envelope.hash)
        return CommandReply(message.command_id, events=(envelope,))

    async def _distribute_at_creation(
        self, plan: _Plan, partition: int, creation: CommandMessage, created: TaskState
    ) -> None:
        """The dispatcher's distribution of a task just created, in the same transaction:
        decided as if it had come from the dispatcher later."""
        distributor = self.distributor
        assert distributor is not None
        command = await distributor.distribution_at_creation(created)
        if command is None:
            return
        message = CommandMessage(
            new_id(), creation.task_id, DISPATCHER, command, creation.correlation_id
        )
        try:
            reply = await self._decide(plan, partition, message)
        except PoisonCommand as poison:
            reply = CommandReply(message.command_id, error=InvalidCommand(str(poison)))
        if reply.error is not None or reply.state is None:
            distributor.distributed_at_creation(command, None)
            return
        plan.distributed.append((distributor, command, Outcome(reply.state, reply.events)))

    def _reply(self, reply: CommandReply) -> OutRecord:
        """The answer to a command for whoever sent it, in the same transaction."""
        return OutRecord(self.log.topics.replies, reply.command_id.encode(), reply.encode(), 0)

    def _seal(
        self, known: _Known, message: CommandMessage, decided: Sequence[Any]
    ) -> tuple[TaskState, list[Envelope]]:
        try:
            return seal_events(
                message.task_id,
                known.state,
                known.hash,
                decided,
                at=message.command.now,
                actor=message.actor,
                ids=self._ids,
                causation_id=message.causation_id or message.command_id,
                correlation_id=message.correlation_id,
            )
        except (ValueError, TypeError) as error:
            raise PoisonCommand(f"cannot seal the events: {error}") from error

    def _dead_letter(self, record: Any, reason: str) -> OutRecord:
        source = f"{record.topic}:{record.partition}:{record.offset}"
        return OutRecord(
            self.log.topics.deadletter,
            record.key or b"",
            record.value,
            0,
            headers=(("error", reason.encode()[:1000]), ("source", source.encode())),
        )

    async def _load(self, partition: int, task_id: str) -> _Known:
        cache = self._known.setdefault(partition, OrderedDict())
        known = cache.get(task_id)
        if known is not None:
            cache.move_to_end(task_id)
            return known
        stream = await self.log.read_stream(task_id)
        return _Known(fold(task_id, stream), stream[-1].hash if stream else GENESIS_HASH)

    def _remember(self, partition: int, states: Mapping[str, _Known]) -> None:
        cache = self._known.setdefault(partition, OrderedDict())
        for task_id, known in states.items():
            cache[task_id] = known
            cache.move_to_end(task_id)
        while len(cache) > self._cache_size:
            cache.popitem(last=False)


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
