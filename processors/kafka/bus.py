"""Commands sent to the Kafka command processors, answered through ``<prefix>.replies``.

On Kafka, a task changes only in the transaction of the processor that owns its partition
(:class:`~processors.kafka.processor.KafkaCommandProcessor`). Every other part of taskledger —
the HTTP edge, the dispatcher, the deadline keeper, retention — runs its commands through
this bus, their :class:`~processors.command_port.TaskCommands` as
:class:`~processors.commands.EmbeddedCommands` is on the embedded log: ``execute`` puts the
command on ``<prefix>.commands`` in its task's partition and waits for the reply that the
processor commits together with the events. A refusal comes back as the same domain error
EmbeddedCommands would raise, so callers cannot tell the two apart.

The bus follows the replies topic from its end as it was when the bus started, and picks
out its own command ids; any number of processes may send commands at once. In a process
that also runs the command processor (:meth:`KafkaCommandBus.attach`), the commands of tasks
whose partition it owns skip the broker's round trips: they are decided in that partition's
next transaction and answered when it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from aggregates import Command, TaskState, fold
from events import Envelope
from events.kafka import KafkaEventLog
from processors.command_core import AnyCommand, Outcome
from processors.commands import new_id
from processors.kafka.processor import KafkaCommandProcessor
from processors.kafka.publisher import CommandPublisher
from processors.kafka.replies import CommandReply, NoReply
from processors.ledger_commands import RecordLedgerEvent

logger = logging.getLogger(__name__)

_IDLE_FETCH_WAIT_MS = 250


class KafkaCommandBus:
    def __init__(self, log: KafkaEventLog, *, reply_timeout: float = 30.0) -> None:
        self.log = log
        self.reply_timeout = reply_timeout
        self._publisher = CommandPublisher(log)
        self._replies: Any = None
        self._follower: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[CommandReply]] = {}
        self._start_lock = asyncio.Lock()
        self._started = False
        self._local: KafkaCommandProcessor | None = None

    def attach(self, processor: KafkaCommandProcessor) -> None:
        """Decide the commands of the tasks ``processor`` owns in this process."""
        self._local = processor

    async def start(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self.log.start()
            # From the end as of now: no reply to a command sent after this is missed.
            # Idle, the broker holds each fetch this long: 4 fetches a second rather than
            # 50 (a fetch costs the edge about a millisecond of CPU); a reply that comes
            # is answered at once.
            self._replies = await self.log.follow_from_end(
                "replies",
                [TopicPartition(self.log.topics.replies, 0)],
                fetch_max_wait_ms=_IDLE_FETCH_WAIT_MS,
            )
            await self._publisher.start()
            self._follower = asyncio.create_task(self._follow(), name="command-replies")
            self._started = True

    async def close(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publisher.stop(), 10)
        if self._replies is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._replies.stop(), 10)
        self._replies = None
        self._started = False
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NoReply("the command bus closed before the reply came"))
        self._waiting.clear()

    async def load(self, task_id: str) -> TaskState:
        return fold(task_id, await self.log.read_stream(task_id))

    async def execute(
        self,
        task_id: str,
        command: Command,
        *,
        actor: str,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Outcome:
        reply = await self._run(task_id, command, actor, correlation_id, causation_id)
        assert reply.state is not None
        return Outcome(reply.state, reply.events)

    async def record_ledger(
        self, stream_id: str, command: RecordLedgerEvent, *, actor: str
    ) -> Envelope:
        """Append one event to a ledger stream through its partition's owner; the event."""
        reply = await self._run(stream_id, command, actor, None, None)
        (envelope,) = reply.events
        return envelope

    async def _run(
        self,
        task_id: str,
        command: AnyCommand,
        actor: str,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> CommandReply:
        """Decided here when this process owns the partition, else through the broker."""
        local = self._local
        answer = None
        if local is not None:
            answer = local.execute_local(
                task_id,
                command,
                actor=actor,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )
        if answer is not None:
            reply = await self._wait(answer, task_id)
        else:
            reply = await self._send(task_id, command, actor, correlation_id, causation_id)
        if reply.error is not None:
            raise reply.error
        return reply

    async def _send(
        self,
        task_id: str,
        command: AnyCommand,
        actor: str,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> CommandReply:
        """Through the commands topic, answered through the replies topic."""
        await self.start()
        command_id = new_id()
        future: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future  # before sending: the reply may come at once
        try:
            await self._publisher.submit(
                task_id,
                command,
                actor=actor,
                command_id=command_id,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )
            return await self._wait(future, task_id, command_id)
        finally:
            self._waiting.pop(command_id, None)

    async def _wait(
        self, answer: asyncio.Future[CommandReply], task_id: str, command_id: str = "local"
    ) -> CommandReply:
        try:
            return await asyncio.wait_for(answer, self.reply_timeout)
        except TimeoutError:
            raise NoReply(
                f"no command processor answered command {command_id} "
                f"for task {task_id} within {self.reply_timeout:g}s"
            ) from None

    async def _follow(self) -> None:
        while True:
            try:
                fetched = await self._replies.getmany(timeout_ms=200, max_records=2000)
            except KafkaError as error:  # the broker is away: the consumer reconnects
                logger.warning("reading replies: %r", error)
                await asyncio.sleep(0.5)
                continue
            for records in fetched.values():
                for record in records:
                    future = self._waiting.get(record.key.decode()) if record.key else None
                    if future is None or future.done():
                        continue
                    try:
                        future.set_result(CommandReply.decode(record.value))
                    except (ValueError, TypeError, KeyError) as error:
                        logger.error("undecodable reply %s: %r", record.key, error)
