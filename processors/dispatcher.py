"""The dispatcher: hands each PENDING task to k miners, highest priority first.

It dispatches the tasks of the partitions its process owns (``owns``): every task on the
embedded log, where one process owns everything, and on Kafka the tasks of the command
partitions this processor owns (see :mod:`processors.kafka.owned`). There it hears of its
tasks from the transactions its command processor commits (:meth:`Dispatcher.follow`)
rather than from the log, and sweeps the read model now and then (:meth:`Dispatcher.sweep`)
for tasks of partitions it has just taken.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import datetime

from aggregates import DistributeTask, DomainError, TaskState, fold
from events import PRIORITY_RANK, Envelope, EventLog
from processors.command_core import Outcome
from processors.command_port import TaskCommands
from processors.pool import MinerPool
from processors.selection import MinerSelector
from processors.settings import ProcessorSettings
from processors.work import WorkSender
from projections.store import ReadModelStore

log = logging.getLogger(__name__)

NAME = "dispatcher"
_SETTLED = frozenset({"MinerResponded", "MinerFailed", "MinerTimedOut"})
# How many distributed tasks the dispatcher remembers, so that a sweep of a lagging read
# model does not queue them again.
_REMEMBERED = 50_000
# Enough for any read model's PENDING tasks at once.
_SEED_LIMIT = 100_000


def _everything(task_id: str) -> bool:
    return True


class Dispatcher:
    """Hears of new tasks (from the log, or from its partitions' commits); queues them by
    priority; assigns miners.

    Tasks that find no free miner wait in the queue and are tried again as
    miners settle. On start the queue is seeded with every PENDING task of the
    read model, so nothing created before the checkpoint is forgotten.
    """

    def __init__(
        self,
        commands: TaskCommands,
        log_: EventLog,
        store: ReadModelStore,
        pool: MinerPool,
        selector: MinerSelector,
        sender: WorkSender,
        settings: ProcessorSettings,
        clock: Callable[[], datetime],
        concurrency: int = 256,
        checkpoint_seconds: float = 0.5,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self._commands = commands
        self._log = log_
        self._store = store
        self._pool = pool
        self._selector = selector
        self._sender = sender
        self._settings = settings
        self._clock = clock
        self._queue: list[tuple[int, int, str]] = []
        self._queued: set[str] = set()
        self._created: dict[str, Envelope] = {}  # queued tasks' TaskCreated, as the log told it
        self._order = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting: list[tuple[int, int, str]] = []
        self._checkpoint_seconds = checkpoint_seconds
        self._checkpoint: str | None = None
        self._batches: deque[tuple[str, list[asyncio.Task[None]]]] = deque()
        self._seeded = False
        # Whether a task is this dispatcher's to distribute (its partition is owned here).
        self.owns = owns or _everything
        self._distributed_lately: OrderedDict[str, None] = OrderedDict()
        # Tasks distributed by this process, at creation or from the queue.
        self.distributed = 0

    def _push(self, task_id: str, priority: str) -> None:
        if task_id in self._queued or not self.owns(task_id):
            return
        self._queued.add(task_id)
        self._order += 1
        heapq.heappush(self._queue, (-PRIORITY_RANK.get(priority, 1), self._order, task_id))

    def _forget(self, task_id: str) -> None:
        self._queued.discard(task_id)
        self._created.pop(task_id, None)

    def _remember_distributed(self, task_id: str) -> None:
        self._distributed_lately[task_id] = None
        if len(self._distributed_lately) > _REMEMBERED:
            self._distributed_lately.popitem(last=False)

    async def _state(self, task_id: str) -> TaskState:
        """The task as its stream has it, or as its TaskCreated said if the read lags.

        On Kafka a commit is visible to subscribers a moment before the writer in the same
        process has recorded it. The log holds its subscribers back for that moment, but
        only for so long (``settle_seconds``), and a task dropped here would sit in PENDING
        until its deadline. A task the read does not find yet is PENDING with what it was
        created with; the command processor decides the distribution against the log's own
        state in any case, so nothing stale is written: a task that moved on is refused.
        """
        state = await self._commands.load(task_id)
        created = self._created.get(task_id)
        if not state.exists and created is not None:
            return fold(task_id, [created])
        return state

    async def run(self) -> None:
        """Dispatch from the log: every task created after the checkpoint, and those the
        read model has PENDING."""
        self._selector.seed(await self._store.all_miners())
        await self.sweep(redeliver=_everything)
        self._seeded = True
        checkpoint = await self._log.load_checkpoint(NAME)
        saving = asyncio.get_running_loop().create_task(self._save_checkpoints(checkpoint))
        try:
            async for batch in self._log.subscribe(after=checkpoint):
                self.observe(batch.events)
                # The next batch is read while these dispatches run: a task created
                # meanwhile does not wait for their appends to become durable.
                started = await self._start_queued()
                if started or self._batches:
                    self._batches.append((batch.checkpoint, started))
                else:
                    self._checkpoint = batch.checkpoint
        finally:
            saving.cancel()

    async def follow(self, events: AsyncIterator[Sequence[Envelope]]) -> None:
        """Dispatch from ``events``, the owned partitions' events as they are committed
        (no checkpoint: the owner sweeps the read model for what it has missed)."""
        self._selector.seed(await self._store.all_miners())
        self._seeded = True
        async for batch in events:
            self.observe(batch)
            await self._start_queued()

    async def sweep(self, redeliver: Callable[[str], bool] | None = None) -> int:
        """Queue the owned tasks the read model has PENDING that are not queued yet, and
        send again the work of the owned DISTRIBUTED tasks for which ``redeliver`` says so (work
        sent before a restart, or by a partition's previous owner, may never have reached
        its miners). Returns how many tasks were queued."""
        queued = len(self._queued)
        for state in await self._store.tasks_in_status("PENDING", _SEED_LIMIT):
            if state.task_id not in self._distributed_lately:
                self._push(state.task_id, state.priority)
        if redeliver is None:
            return len(self._queued) - queued
        for state in await self._store.tasks_in_status("DISTRIBUTED", _SEED_LIMIT):
            if self.owns(state.task_id) and redeliver(state.task_id):
                self._sender.redeliver(state)
        return len(self._queued) - queued

    async def reseed_load(self) -> None:
        """Take the miners' load from the read model, which counts every process's
        assignments (a moment late); this dispatcher's own count from then on."""
        self._selector.seed(await self._store.all_miners())

    def queued(self) -> Collection[str]:
        return frozenset(self._queued)

    async def start_queued(self) -> int:
        """Start dispatching what is queued (a sweep's finds); returns how many."""
        return len(await self._start_queued())

    async def _save_checkpoints(self, saved: str | None) -> None:
        """Keep the checkpoint a moment behind, rather than write it after every batch.

        A batch counts as done once every dispatch it started has finished.
        Batches are often a handful of events, and a write each would cost more
        than the dispatching. After a restart the dispatcher sees again what came
        after the checkpoint, which it tolerates: a task no longer PENDING is
        skipped, and the PENDING ones are queued from the read model anyway.
        """
        while True:
            await asyncio.sleep(self._checkpoint_seconds)
            while self._batches and all(task.done() for task in self._batches[0][1]):
                self._checkpoint = self._batches.popleft()[0]
            checkpoint = self._checkpoint
            if checkpoint is None or checkpoint == saved:
                continue
            try:
                await self._log.save_checkpoint(NAME, checkpoint)
            except Exception:
                # The log did not answer: the next round writes a later checkpoint.
                log.exception("dispatcher checkpoint not saved")
                continue
            saved = checkpoint

    async def distribution_at_creation(self, state: TaskState) -> DistributeTask | None:
        """Miners for a task in the making, to be distributed in its creation's transaction.

        A runtime that decides a task's creation where this dispatcher runs may ask, and
        save the task the trip through the log to this dispatcher and a transaction of its
        own (see :class:`~processors.kafka.processor.KafkaCommandProcessor`). None while
        tasks wait in the queue (they come first, by priority) or no miner is free: the
        task is then queued as any other when its creation is heard of. The chosen miners
        count as busy until :meth:`distributed_at_creation` hears how it went.
        """
        if not self._seeded or self._queue or self._waiting or state.status != "PENDING":
            return None
        chosen = self._selector.choose(
            await self._pool.miners(), state.task_type, state.miners_wanted
        )
        if not chosen:
            return None
        for miner in chosen:
            self._selector.assigned(miner.hotkey)
        assignments = tuple(self._sender.assignment(state, m.hotkey) for m in chosen)
        return DistributeTask(assignments, self._clock())

    def distributed_at_creation(self, command: DistributeTask, outcome: Outcome | None) -> None:
        """How a distribution from :meth:`distribution_at_creation` went: its outcome once
        committed (the work goes out now), or None if it was not (the task's creation
        was not either, and will be decided again)."""
        # The log will report committed assignments; count them once, from there.
        for assignment in command.assignments:
            self._selector.settled(assignment.hotkey)
        if outcome is not None:
            self.distributed += 1
            self._sender.deliver(outcome)

    def observe(self, events: Sequence[Envelope]) -> None:
        """Learn from events in log order: new tasks to queue, miners' load and health."""
        # Tasks distributed in the transaction that created them need no dispatching.
        distributed = {e.task_id for e in events if e.type == "TaskDistributed"}
        for envelope in events:
            data = envelope.data
            self._selector.learn(envelope.type, data)
            if envelope.type == "TaskCreated":
                if envelope.task_id in distributed:
                    continue
                if envelope.task_id not in self._queued:
                    self._created[envelope.task_id] = envelope
                self._push(envelope.task_id, data.get("priority", "normal"))
            elif envelope.type == "TaskDistributed":
                self._forget(envelope.task_id)
                self._remember_distributed(envelope.task_id)
                for assignment in data["assignments"]:
                    self._selector.assigned(assignment["hotkey"])
            elif envelope.type == "MinerAssigned":
                self._selector.assigned(data["assignment"]["hotkey"])
            elif envelope.type in _SETTLED:
                self._selector.settled(data["hotkey"])
        if any(e.type in _SETTLED for e in events):
            # Capacity was freed: tasks that found no miner may find one now.
            for item in self._waiting:
                heapq.heappush(self._queue, item)
            self._waiting.clear()

    async def _start_queued(self) -> list[asyncio.Task[None]]:
        started: list[asyncio.Task[None]] = []
        while self._queue:
            item = heapq.heappop(self._queue)
            await self._slots.acquire()
            started.append(asyncio.get_running_loop().create_task(self._dispatch(item)))
        return started

    async def _dispatch(self, item: tuple[int, int, str]) -> None:
        task_id = item[2]
        try:
            if task_id not in self._queued:
                return  # distributed meanwhile (see observe)
            if not self.owns(task_id):
                self._forget(task_id)
                return  # its partition moved on: its new owner dispatches it
            state = await self._state(task_id)
            if state.status != "PENDING":
                self._forget(task_id)
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
                outcome = await self._commands.execute(
                    task_id, DistributeTask(assignments, self._clock()), actor=NAME
                )
            except DomainError as refused:
                log.debug("task %s not distributed: %s", task_id, refused)
                self._forget(task_id)
                return
            finally:
                # The log will report these assignments; count them once, from there.
                for miner in chosen:
                    self._selector.settled(miner.hotkey)
            self._forget(task_id)
            self.distributed += 1
            self._sender.deliver(outcome)
        except Exception:
            # The log or the directory failed for a moment: try again with the waiting.
            log.exception("dispatching task %s failed; it waits for the next try", task_id)
            self._waiting.append(item)
        finally:
            self._slots.release()

    async def retry_waiting(self) -> None:
        """Called now and then: miners may have joined the directory."""
        for item in self._waiting:
            heapq.heappush(self._queue, item)
        self._waiting.clear()
        started = await self._start_queued()
        if started:
            await asyncio.gather(*started)
