"""Puts commands on ``<prefix>.commands``, each in its task's partition."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from events.kafka import KafkaEventLog
from processors.command_core import AnyCommand, CommandRequest
from processors.commands import new_id
from processors.kafka.messages import command_id_of, encode_command


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
        request = CommandRequest(
            task_id, command, actor, causation_id, correlation_id, command_id or new_id()
        )
        await self._producer.send_and_wait(
            self._log.topics.commands,
            value=encode_command(request),
            key=task_id.encode(),
            partition=self._log.partition_of(task_id),
        )
        return command_id_of(request)
