"""One poll of a partition's commands, decided through the command core into one plan.

The commands from the topic come first, then those this process queued for the partition
(:meth:`~processors.kafka.processor.KafkaCommandProcessor.execute_local`); each is decided
on the state the ones before it left, with :func:`~processors.command_core.decide_and_seal`
on the heads of the partition's tasks, which this owner alone writes. The plan holds what
the partition's transaction will write: the events, a reply per command from the topic,
each changed task's status document, and undecodable commands for the dead-letter topic.

Besides the tasks' commands, :class:`~processors.ledger_commands.RecordLedgerEvent` appends
one of the proxy's own facts (a ``WeightsSubmitted``) to a ledger stream: sealed here after
the stream's head, in the same transactions, so the leader's weights processor appends
through the partition's one writer wherever that partition is owned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from aggregates import CreateTask, DistributeTask, DomainError, InvalidCommand, TaskState
from events import GENESIS_HASH, canonical
from events.envelope import seal
from events.kafka import KafkaEventLog, OutRecord, PendingAppend
from events.ledger import UnknownLedgerEvent, is_ledger_stream, ledger_payload
from processors.command_core import (
    CommandRequest,
    Outcome,
    TaskHead,
    TaskHeads,
    UnsealableEvents,
    decide_and_seal,
    head_of,
)
from processors.commands import new_id
from processors.dispatcher import NAME as DISPATCHER
from processors.kafka.messages import PoisonCommand, command_id_of, decode_command
from processors.kafka.replies import CommandReply
from processors.ledger_commands import RecordLedgerEvent
from projections.status_document import status_document

logger = logging.getLogger(__name__)


class DistributesAtCreation(Protocol):
    """The dispatcher, where it runs in the process that decides a task's creation."""

    async def distribution_at_creation(self, state: TaskState) -> DistributeTask | None: ...

    def distributed_at_creation(self, command: DistributeTask, outcome: Outcome | None) -> None: ...


class AwaitedReply(NamedTuple):
    """A command from this process for a partition it owns, and the future its sender
    awaits: the reply address of a command that never crosses the broker."""

    request: CommandRequest
    answer: asyncio.Future[CommandReply]


@dataclass
class Plan:
    """What one poll of a partition turns into: one transaction."""

    appends: list[PendingAppend] = field(default_factory=list)
    records: list[OutRecord] = field(default_factory=list)
    heads: dict[str, TaskHead] = field(default_factory=dict)
    answers: list[tuple[asyncio.Future[CommandReply], CommandReply]] = field(default_factory=list)
    # Distributions decided with their task's creation, and their outcomes (see
    # Planner.distributor), told to the dispatcher once the transaction ends.
    distributed: list[tuple[DistributesAtCreation, DistributeTask, Outcome]] = field(
        default_factory=list
    )
    # Ledger streams appended to in this plan: (sequence, hash) of their new heads.
    ledger: dict[str, tuple[int, str]] = field(default_factory=dict)
    rejected: int = 0
    poisoned: int = 0


def settle_distributions(plan: Plan, *, committed: bool) -> None:
    """Tell the dispatcher whether the distributions it decided at creation were committed
    (the work goes out) or not (their tasks' creations were not either, and are decided
    again)."""
    distributed, plan.distributed = plan.distributed, []
    for distributor, command, outcome in distributed:
        distributor.distributed_at_creation(command, outcome if committed else None)


class Planner:
    """Decides the partitions' commands; keeps the heads of their tasks between plans."""

    def __init__(self, log: KafkaEventLog, *, cache_size: int, ids: Callable[[], str]) -> None:
        self._log = log
        self._cache_size = cache_size
        self._ids = ids
        self._heads: dict[int, TaskHeads] = {}
        # This process's dispatcher, where one runs: it may distribute a task in the very
        # transaction that creates it, sparing the task a trip through the events topic
        # to the dispatcher and a transaction of its own (a third of the median time
        # from intake to DISTRIBUTED under load).
        self.distributor: DistributesAtCreation | None = None

    def reset(self, partition: int) -> None:
        """Forget the partition's heads (it was just taken, or its transaction failed):
        read from the log again when next needed."""
        self._heads[partition] = TaskHeads(self._cache_size)

    def drop(self, partition: int) -> None:
        self._heads.pop(partition, None)

    async def plan(
        self, partition: int, records: Sequence[Any], local: Sequence[AwaitedReply] = ()
    ) -> Plan:
        """The commands of ``records`` (from the topic) and ``local`` (from this process),
        decided in that order on the partition's heads."""
        plan = Plan()
        try:
            await self._plan_commands(plan, partition, records, local)
        except BaseException:
            settle_distributions(plan, committed=False)
            raise
        return plan

    async def _plan_commands(
        self, plan: Plan, partition: int, records: Sequence[Any], local: Sequence[AwaitedReply]
    ) -> None:
        topics = self._log.topics
        for record in records:
            request: CommandRequest | None = None
            try:
                request = decode_command(record.value)
                if self._log.partition_of(request.task_id) != partition:
                    raise PoisonCommand(f"task {request.task_id} belongs to another partition")
                reply = await self._decide(plan, partition, request)
            except PoisonCommand as poison:
                plan.poisoned += 1
                plan.records.append(self._dead_letter(record, str(poison)))
                if request is not None:
                    refusal = InvalidCommand(str(poison))
                    plan.records.append(
                        self._reply(CommandReply(command_id_of(request), error=refusal))
                    )
                continue
            plan.records.append(self._reply(reply))
        for awaited in local:
            try:
                reply = await self._decide(plan, partition, awaited.request)
            except PoisonCommand as poison:
                reply = CommandReply(
                    command_id_of(awaited.request), error=InvalidCommand(str(poison))
                )
            plan.answers.append((awaited.answer, reply))
        for task_id, head in plan.heads.items():
            plan.records.append(
                OutRecord(
                    topics.status,
                    task_id.encode(),
                    canonical(status_document(head.state)),
                    partition,
                )
            )

    async def _decide(self, plan: Plan, partition: int, request: CommandRequest) -> CommandReply:
        """Decide one command against the state so far, adding its events to the plan."""
        if isinstance(request.command, RecordLedgerEvent):
            return await self._decide_ledger(plan, request, request.command)
        replying = command_id_of(request)
        task_id = request.task_id
        head = plan.heads.get(task_id) or await self._load(partition, task_id)
        try:
            after, sealed = decide_and_seal(head, request, self._ids)
        except DomainError as refused:
            logger.info("command %s refused: %s", replying, refused)
            plan.rejected += 1
            return CommandReply(replying, error=refused)
        except UnsealableEvents as error:
            raise PoisonCommand(f"cannot seal the events: {error}") from error
        if not sealed:
            return CommandReply(replying, head.state)
        plan.appends.append(PendingAppend(task_id, head.state.version, sealed))
        plan.heads[task_id] = after
        if isinstance(request.command, CreateTask) and self.distributor is not None:
            await self._distribute_at_creation(plan, partition, request, after.state)
        return CommandReply(replying, after.state, tuple(sealed))

    async def _decide_ledger(
        self, plan: Plan, request: CommandRequest, command: RecordLedgerEvent
    ) -> CommandReply:
        """One of the proxy's own facts, sealed after its ledger stream's head: no task, no
        status document; refused (as a poison command) unless the ledger knows its type."""
        stream_id = request.task_id
        if not is_ledger_stream(stream_id):
            raise PoisonCommand(f"{stream_id} is not a ledger stream")
        head = plan.ledger.get(stream_id)
        if head is None:
            stream = await self._log.read_stream(stream_id)
            head = (stream[-1].sequence, stream[-1].hash) if stream else (0, GENESIS_HASH)
        try:
            envelope = seal(
                event_id=self._ids(),
                task_id=stream_id,
                sequence=head[0] + 1,
                type=command.type,
                version=command.version,
                occurred_at=command.now,
                actor=request.actor,
                data=command.data,
                prev_hash=head[1],
                causation_id=request.causation_id or request.command_id,
                correlation_id=request.correlation_id,
            )
            ledger_payload(envelope)
        except (UnknownLedgerEvent, ValueError, TypeError) as error:
            raise PoisonCommand(f"not a ledger event: {error}") from error
        plan.appends.append(PendingAppend(stream_id, head[0], [envelope]))
        plan.ledger[stream_id] = (envelope.sequence, envelope.hash)
        return CommandReply(command_id_of(request), events=(envelope,))

    async def _distribute_at_creation(
        self, plan: Plan, partition: int, creation: CommandRequest, created: TaskState
    ) -> None:
        """The dispatcher's distribution of a task just created, in the same transaction:
        decided as if it had come from the dispatcher later."""
        distributor = self.distributor
        assert distributor is not None
        command = await distributor.distribution_at_creation(created)
        if command is None:
            return
        request = CommandRequest(
            creation.task_id, command, DISPATCHER, None, creation.correlation_id, new_id()
        )
        try:
            reply = await self._decide(plan, partition, request)
        except PoisonCommand as poison:
            reply = CommandReply(command_id_of(request), error=InvalidCommand(str(poison)))
        if reply.error is not None or reply.state is None:
            distributor.distributed_at_creation(command, None)
            return
        plan.distributed.append((distributor, command, Outcome(reply.state, reply.events)))

    def _reply(self, reply: CommandReply) -> OutRecord:
        """The answer to a command for whoever sent it, in the same transaction."""
        return OutRecord(self._log.topics.replies, reply.command_id.encode(), reply.encode(), 0)

    def _dead_letter(self, record: Any, reason: str) -> OutRecord:
        source = f"{record.topic}:{record.partition}:{record.offset}"
        return OutRecord(
            self._log.topics.deadletter,
            record.key or b"",
            record.value,
            0,
            headers=(("error", reason.encode()[:1000]), ("source", source.encode())),
        )

    async def _load(self, partition: int, task_id: str) -> TaskHead:
        head = self._heads.setdefault(partition, TaskHeads(self._cache_size)).get(task_id)
        if head is not None:
            return head
        return head_of(task_id, await self._log.read_stream(task_id))

    def committed(self, partition: int, plan: Plan) -> None:
        """Keep the heads a committed plan left."""
        heads = self._heads.setdefault(partition, TaskHeads(self._cache_size))
        for task_id, head in plan.heads.items():
            heads.remember(task_id, head)
