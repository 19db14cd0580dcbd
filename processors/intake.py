"""Accepting a client's job: one TaskCreated, idempotent per (client, Idempotency-Key)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aggregates import CreateTask, TaskAlreadyExists, TaskState
from events import Priority, TaskType
from processors.command_port import TaskCommands
from processors.commands import new_id
from processors.settings import ProcessorSettings


def task_id_for(secret: bytes, client: str, idempotency_key: str | None) -> str:
    """A fresh id, or the same id every time for the same client and key.

    Deriving the id from the key makes a retried request land on the same
    stream, where the log's uniqueness settles any race without a lookup. The
    derivation is keyed with the deployment's secret, so nobody can tell a
    task's id from a client name and key ahead of time.
    """
    if idempotency_key is None:
        return new_id()
    message = f"taskledger-idempotency/1\n{client}\n{idempotency_key}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


class Intake:
    def __init__(
        self,
        handler: TaskCommands,
        settings: ProcessorSettings,
        clock: Callable[[], datetime],
        *,
        idempotency_secret: bytes,
    ) -> None:
        self._idempotency_secret = idempotency_secret
        self._handler = handler
        self._settings = settings
        self._clock = clock

    def task_id_for(self, client: str, idempotency_key: str | None) -> str:
        return task_id_for(self._idempotency_secret, client, idempotency_key)

    async def submit(
        self,
        *,
        client: str,
        task_type: TaskType,
        priority: Priority,
        input: dict[str, Any],
        idempotency_key: str | None = None,
        blobs: tuple[str, ...] = (),
    ) -> tuple[TaskState, bool]:
        """Returns the task and whether this call created it (False: an idempotent repeat)."""
        task_id = self.task_id_for(client, idempotency_key)
        now = self._clock()
        command = CreateTask(
            task_type=task_type,
            priority=priority,
            input=input,
            client=client,
            deadline=now + timedelta(seconds=self._settings.task_deadline_seconds),
            miners_wanted=self._settings.miners_for(task_type),
            miner_timeout_seconds=self._settings.miner_timeout_seconds,
            now=now,
            idempotency_key=idempotency_key,
            blobs=blobs,
        )
        try:
            outcome = await self._handler.execute(task_id, command, actor=client)
        except TaskAlreadyExists:
            return await self._handler.load(task_id), False
        return outcome.state, True
