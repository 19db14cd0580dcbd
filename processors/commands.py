"""The embedded runtime's commands: the command core's ``decide_and_seal`` on a head cache,
the commands that arrive together appended as one batch, retried on a concurrent write."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregates import Command, DomainError, TaskState
from events import Envelope, EventLog, StaleVersion
from events.log import append_many
from processors.command_core import (
    CommandRequest,
    Outcome,
    TaskHead,
    TaskHeads,
    decide_and_seal,
    head_of,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


# The variant digit of an RFC 4122 UUID keeps the low two bits of the random one.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class _IdPool:
    """Random (version 4) UUIDs made in bulk: one system call and one pass per 4096 ids.

    A forked child must not reuse its parent's unused ids, so the pool is
    emptied in the child after a fork.
    """

    def __init__(self, ids_per_draw: int = 4096) -> None:
        self._per_draw = ids_per_draw
        self._ids: list[str] = []
        self._lock = threading.Lock()

    def take(self) -> str:
        try:
            return self._ids.pop()  # atomic: no two callers get the same id
        except IndexError:
            with self._lock:
                if not self._ids:
                    self._ids = self._draw()
                return self._ids.pop()

    def _draw(self) -> list[str]:
        digits = os.urandom(16 * self._per_draw).hex()
        variant = _VARIANT
        return [
            f"{digits[i : i + 8]}-{digits[i + 8 : i + 12]}-4{digits[i + 13 : i + 16]}-"
            f"{variant[digits[i + 16]]}{digits[i + 17 : i + 20]}-{digits[i + 20 : i + 32]}"
            for i in range(0, len(digits), 32)
        ]

    def forget(self) -> None:
        self._ids, self._lock = [], threading.Lock()


_pool = _IdPool()
os.register_at_fork(after_in_child=_pool.forget)


def new_id() -> str:
    """A random (version 4) UUID, spelled as ``str(uuid.uuid4())`` spells it."""
    return _pool.take()


@dataclass(slots=True)
class _Decided:
    """One task's share of a batch, decided on one head, waiting for its append."""

    task_id: str
    base: TaskHead  # the head decided on: the append expects its version
    head: TaskHead  # the head after the share's events so far
    sealed: list[Envelope]
    results: dict[int, Outcome | Exception]


class EmbeddedCommands:
    """The single path by which anything changes a task on the embedded log.

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
        max_batch: int = 1_000,
    ) -> None:
        self._log = log
        self._ids = ids
        self._heads = TaskHeads(cache_size)
        self._attempts = attempts
        self._max_batch = max_batch
        self._pending: list[tuple[CommandRequest, asyncio.Future[Outcome]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def load(self, task_id: str) -> TaskState:
        head = self._heads.get(task_id)
        return (head or await self._read_head(task_id)).state

    async def execute(
        self,
        task_id: str,
        command: Command,
        *,
        actor: str,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Outcome:
        """Run one command; commands that arrive together run as one batch.

        Commands from concurrent callers (the edge's requests, the dispatcher, the
        miners' replies) are gathered while the batch before them is appended, and
        decided and appended together by :meth:`execute_many`, each with its own
        result: one command alone waits for nothing.
        """
        request = CommandRequest(task_id, command, actor, causation_id, correlation_id)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((request, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self.execute_many([request for request, _ in batch])
            except BaseException as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue  # its caller went away
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def execute_many(self, requests: Sequence[CommandRequest]) -> list[Outcome | Exception]:
        """Run many commands with one append for all the streams they change.

        Each request gets what :meth:`execute` would give it: its Outcome, or the
        exception (a DomainError, StaleVersion, BrokenChain) it would raise, in
        the order of ``requests``. Requests for the same task are decided in
        order, each on the state the ones before it left (a refused one leaves
        it as it was), and their events go into the stream in one append.
        """
        by_task: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            by_task.setdefault(request.task_id, []).append(index)
        results: dict[int, Outcome | Exception] = {}
        waiting = list(by_task)
        fresh: set[str] = set()
        for _ in range(self._attempts):
            if not waiting:
                break
            decided: list[_Decided] = []
            again: list[str] = []
            for task_id in waiting:
                head = None if task_id in fresh else self._heads.get(task_id)
                cached = head is not None
                if head is None:
                    head = await self._read_head(task_id)
                share = self._decide(task_id, head, cached, requests, by_task[task_id])
                if share is None:
                    # A refusal or a no-op on a cached head may only mean that another
                    # process moved the task on: decide again on the log.
                    fresh.add(task_id)
                    again.append(task_id)
                elif share.sealed:
                    decided.append(share)
                else:
                    results.update(share.results)
            if decided:
                try:
                    outcomes = await append_many(
                        self._log,
                        [(d.task_id, d.base.state.version, d.sealed) for d in decided],
                    )
                except Exception as error:  # nothing of this append was written
                    for share in decided:
                        self._heads.forget(share.task_id)
                        results.update(dict.fromkeys(share.results, error))
                    outcomes = []
                for share, outcome in zip(decided, outcomes, strict=False):
                    if outcome is None:
                        self._heads.remember(share.task_id, share.head)
                        results.update(share.results)
                    elif isinstance(outcome, StaleVersion):
                        self._heads.forget(share.task_id)
                        fresh.add(share.task_id)
                        again.append(share.task_id)
                    else:
                        results.update(dict.fromkeys(share.results, outcome))
            waiting = again
        for task_id in waiting:
            results.update(dict.fromkeys(by_task[task_id], StaleVersion(task_id, -1, -1)))
        return [results[index] for index in range(len(requests))]

    def _decide(
        self,
        task_id: str,
        head: TaskHead,
        cached: bool,
        requests: Sequence[CommandRequest],
        indices: list[int],
    ) -> _Decided | None:
        """Decide and seal the requests at ``indices`` in order; None: look at the log again."""
        share = _Decided(task_id, head, head, [], {})
        for index in indices:
            try:
                after, sealed = decide_and_seal(share.head, requests[index], self._ids)
            except DomainError as refused:
                if cached:
                    return None
                share.results[index] = refused
                continue
            if not sealed:
                if cached:
                    return None  # nothing to do here may mean a stale head: look again
                share.results[index] = Outcome(share.head.state, ())
                continue
            share.head = after
            share.sealed += sealed
            share.results[index] = Outcome(after.state, tuple(sealed))
        return share

    async def _read_head(self, task_id: str) -> TaskHead:
        """The task's head as the log has it now."""
        stream = await self._log.read_stream(task_id)
        head = head_of(task_id, stream)
        if stream:
            self._heads.remember(task_id, head)
        return head
