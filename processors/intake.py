"""Accepting a client's job: one TaskCreated, idempotent per (client, Idempotency-Key)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from aggregates import CreateTask, TaskAlreadyExists, TaskState
from events import Priority, TaskType
from processors.command_port import TaskCommands
from processors.commands import new_id
from processors.settings import ProcessorSettings


class QuotaExceeded(Exception):
    """The client has created as many tasks today as its quota allows."""

    def __init__(self, client: str) -> None:
        super().__init__(f"{client} has used its quota of tasks for today (UTC)")
        self.client = client


class Quota(Protocol):
    """Counts the tasks each client creates (across every edge) against its quota."""

    async def charge(self, client: str) -> bool: ...

    async def refund(self, client: str) -> None: ...


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
        commands: TaskCommands,
        settings: ProcessorSettings,
        clock: Callable[[], datetime],
        *,
        idempotency_secret: bytes,
    ) -> None:
        self._idempotency_secret = idempotency_secret
        self._commands = commands
        self._settings = settings
        self._clock = clock
        # Set by the composition root where clients have quotas (see http_edge.key_store).
        self.quota: Quota | None = None

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
        """Returns the task and whether this call created it (False: an idempotent repeat).

        Every intake passes here, so this is where a task is charged to its client's
        quota: before it is created, and refunded when nothing was created.
        """
        quota = self.quota
        if quota is None:
            return await self._submit(client, task_type, priority, input, idempotency_key, blobs)
        if not await quota.charge(client):
            if idempotency_key is not None:
                # A repeat of a task created before creates nothing: it is not refused.
                existing = await self._commands.load(self.task_id_for(client, idempotency_key))
                if existing.exists:
                    return existing, False
            raise QuotaExceeded(client)
        created = False
        try:
            state, created = await self._submit(
                client, task_type, priority, input, idempotency_key, blobs
            )
        finally:
            if not created:
                await quota.refund(client)
        return state, created

    async def _submit(
        self,
        client: str,
        task_type: TaskType,
        priority: Priority,
        input: dict[str, Any],
        idempotency_key: str | None,
        blobs: tuple[str, ...],
    ) -> tuple[TaskState, bool]:
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
            outcome = await self._commands.execute(task_id, command, actor=client)
        except TaskAlreadyExists:
            return await self._commands.load(task_id), False
        return outcome.state, True
