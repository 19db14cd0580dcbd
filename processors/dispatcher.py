"""The dispatcher: hands each PENDING task to k miners, highest priority first."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from datetime import datetime

from aggregates import DistributeTask, DomainError
from events import PRIORITY_RANK, Batch, EventLog
from processors.command_port import TaskCommands
from processors.pool import MinerPool
from processors.selection import MinerSelector
from processors.settings import ProcessorSettings
from processors.work import WorkSender
from projections.store import ReadModelStore

log = logging.getLogger(__name__)

NAME = "dispatcher"
_SETTLED = frozenset({"MinerResponded", "MinerFailed", "MinerTimedOut"})


class Dispatcher:
    """Consumes the log for new tasks; queues them by priority; assigns miners.

    Tasks that find no free miner wait in the queue and are tried again as
    miners settle. On start the queue is seeded with every PENDING task of the
    read model, so nothing created before the checkpoint is forgotten.
    """

    def __init__(
        self,
        handler: TaskCommands,
        log_: EventLog,
        store: ReadModelStore,
        pool: MinerPool,
        selector: MinerSelector,
        sender: WorkSender,
        settings: ProcessorSettings,
        clock: Callable[[], datetime],
        concurrency: int = 256,
    ) -> None:
        self._handler = handler
        self._log = log_
        self._store = store
        self._pool = pool
        self._selector = selector
        self._sender = sender
        self._settings = settings
        self._clock = clock
        self._queue: list[tuple[int, int, str]] = []
        self._queued: set[str] = set()
        self._order = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting: list[tuple[int, int, str]] = []

    def _push(self, task_id: str, priority: str) -> None:
        if task_id in self._queued:
            return
        self._queued.add(task_id)
        self._order += 1
        heapq.heappush(self._queue, (-PRIORITY_RANK.get(priority, 1), self._order, task_id))

    async def run(self) -> None:
        self._selector.seed(await self._store.all_miners())
        for state in await self._store.tasks_in_status("PENDING", 100_000):
            self._push(state.task_id, state.priority)
        # Work sent before a restart may never have reached its miners.
        for state in await self._store.tasks_in_status("DISTRIBUTED", 100_000):
            self._sender.redeliver(state)
        checkpoint = await self._log.load_checkpoint(NAME)
        async for batch in self._log.subscribe(after=checkpoint):
            self._observe(batch)
            await self._dispatch_queued()
            await self._log.save_checkpoint(NAME, batch.checkpoint)

    def _observe(self, batch: Batch) -> None:
        for envelope in batch.events:
            data = envelope.data
            if envelope.type == "TaskCreated":
                self._push(envelope.task_id, data.get("priority", "normal"))
            elif envelope.type == "TaskDistributed":
                for assignment in data["assignments"]:
                    self._selector.assigned(assignment["hotkey"])
            elif envelope.type == "MinerAssigned":
                self._selector.assigned(data["assignment"]["hotkey"])
            elif envelope.type in _SETTLED:
                self._selector.settled(data["hotkey"])
        if any(e.type in _SETTLED for e in batch.events):
            # Capacity was freed: tasks that found no miner may find one now.
            for item in self._waiting:
                heapq.heappush(self._queue, item)
            self._waiting.clear()

    async def _dispatch_queued(self) -> None:
        started: list[asyncio.Task[None]] = []
        while self._queue:
            item = heapq.heappop(self._queue)
            await self._slots.acquire()
            started.append(asyncio.get_running_loop().create_task(self._dispatch(item)))
        if started:
            await asyncio.gather(*started)

    async def _dispatch(self, item: tuple[int, int, str]) -> None:
        task_id = item[2]
        try:
            state = await self._handler.load(task_id)
            if state.status != "PENDING":
                self._queued.discard(task_id)
                return
            chosen = self._selector.choose(
                await self._pool.miners(), state.task_type, state.miners_wanted
            )
            if not chosen:
                self._waiting.append(item)
                return
            for miner in chosen:
                self._selector.assigned(miner.hotkey)
            assignments = tuple(self._sender.assignment(state, m.hotkey) for m in chosen)
            try:
                outcome = await self._handler.execute(
                    task_id, DistributeTask(assignments, self._clock()), actor=NAME
                )
            except DomainError as refused:
                log.debug("task %s not distributed: %s", task_id, refused)
                self._queued.discard(task_id)
                return
            finally:
                # The log will report these assignments; count them once, from there.
                for miner in chosen:
                    self._selector.settled(miner.hotkey)
            self._queued.discard(task_id)
            self._sender.deliver(outcome)
        finally:
            self._slots.release()

    async def retry_waiting(self) -> None:
        """Called now and then: miners may have joined the directory."""
        for item in self._waiting:
            heapq.heappush(self._queue, item)
        self._waiting.clear()
        await self._dispatch_queued()
