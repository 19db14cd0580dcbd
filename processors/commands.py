"""Run a command against a task: load, decide, seal, append — retried on a concurrent write."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from aggregates import Command, DomainError, TaskState, decide, evolve, fold
from events import GENESIS_HASH, Envelope, Event, EventLog, StaleVersion, seal, to_data


def utc_now() -> datetime:
    return datetime.now(UTC)


class _RandomPool:
    """Random bytes drawn from the OS in bulk: one system call per 4096 ids, not one each.

    A forked child must not reuse its parent's unused bytes, so the pool is
    emptied in the child after a fork.
    """

    def __init__(self, ids_per_draw: int = 4096) -> None:
        self._size = 16 * ids_per_draw
        self._pool = b""
        self._offset = 0
        self._lock = threading.Lock()

    def take16(self) -> bytes:
        with self._lock:
            if self._offset >= len(self._pool):
                self._pool, self._offset = os.urandom(self._size), 0
            chunk = self._pool[self._offset : self._offset + 16]
            self._offset += 16
            return chunk

    def forget(self) -> None:
        self._pool, self._offset, self._lock = b"", 0, threading.Lock()


_random = _RandomPool()
os.register_at_fork(after_in_child=_random.forget)


def new_id() -> str:
    """A random (version 4) UUID."""
    return str(UUID(bytes=_random.take16(), version=4))


def seal_events(
    task_id: str,
    state: TaskState,
    head_hash: str,
    events: Sequence[Event],
    *,
    at: datetime,
    actor: str,
    ids: Callable[[], str],
    causation_id: str | None = None,
    correlation_id: str | None = None,
) -> tuple[TaskState, list[Envelope]]:
    """Fold decided events into the state and seal each onto the stream's hash chain."""
    sealed: list[Envelope] = []
    previous = head_hash
    for event in events:
        state = evolve(state, event, at)
        envelope = seal(
            event_id=ids(),
            task_id=task_id,
            sequence=state.version,
            type=event.TYPE,
            version=event.VERSION,
            occurred_at=at,
            actor=actor,
            data=to_data(event),
            prev_hash=previous,
            causation_id=causation_id,
            correlation_id=correlation_id or task_id,
        )
        sealed.append(envelope)
        previous = envelope.hash
    return state, sealed


@dataclass(frozen=True, slots=True)
class Outcome:
    state: TaskState
    events: tuple[Envelope, ...]


@dataclass(frozen=True, slots=True)
class _Head:
    state: TaskState
    hash: str


class CommandHandler:
    """The single path by which anything changes a task.

    A small cache of recent task heads spares re-reading a stream for every
    command; a stale head shows up as StaleVersion, and the command is decided
    again on the fresh stream.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        ids: Callable[[], str] = new_id,
        cache_size: int = 20_000,
        attempts: int = 8,
    ) -> None:
        self._log = log
        self._ids = ids
        self._cache: OrderedDict[str, _Head] = OrderedDict()
        self._cache_size = cache_size
        self._attempts = attempts

    async def load(self, task_id: str) -> TaskState:
        return (await self._head(task_id))[0].state

    async def execute(
        self,
        task_id: str,
        command: Command,
        *,
        actor: str,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Outcome:
        fresh = False
        for _ in range(self._attempts):
            head, cached = await self._head(task_id, fresh=fresh)
            try:
                events = decide(head.state, command)
            except DomainError:
                if not cached:
                    raise
                # Another process may have moved the task on: decide again on the log.
                fresh = True
                continue
            if not events:
                if cached:
                    fresh = True  # nothing to do here may mean a stale head: look again
                    continue
                return Outcome(head.state, ())
            state, sealed = seal_events(
                task_id,
                head.state,
                head.hash,
                events,
                at=command.now,
                actor=actor,
                ids=self._ids,
                causation_id=causation_id,
                correlation_id=correlation_id,
            )
            try:
                await self._log.append(task_id, head.state.version, sealed)
            except StaleVersion:
                self._cache.pop(task_id, None)
                fresh = True
                continue
            self._remember(task_id, _Head(state, sealed[-1].hash))
            return Outcome(state, tuple(sealed))
        raise StaleVersion(task_id, -1, -1)

    async def _head(self, task_id: str, *, fresh: bool = False) -> tuple[_Head, bool]:
        """The task's head, and whether it came from the cache (and so may be stale)."""
        cached = None if fresh else self._cache.get(task_id)
        if cached is not None:
            self._cache.move_to_end(task_id)
            return cached, True
        stream = await self._log.read_stream(task_id)
        head = _Head(fold(task_id, stream), stream[-1].hash if stream else GENESIS_HASH)
        if stream:
            self._remember(task_id, head)
        return head, False

    def _remember(self, task_id: str, head: _Head) -> None:
        self._cache[task_id] = head
        self._cache.move_to_end(task_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
