"""What every command processor runs for the partitions it owns: dispatching them.

A task's events are decided only by the owner of its commands partition
(:mod:`processors.kafka.processor`), so that owner is also the natural dispatcher of its
tasks: it distributes a task in the transaction that creates it when a miner is free, and
queues it otherwise. Each processor process runs a :class:`~processors.dispatcher.Dispatcher`
and a :class:`~processors.deadlines.DeadlineKeeper` for exactly the partitions it owns now:
:class:`OwnedPartitions` is told of every assignment and revocation, and of every event its
command processor commits, which is all the dispatcher needs to hear (it reads no log).

A partition just taken may hold tasks its previous owner created but never distributed, or
distributed without their work reaching the miners. On taking it, the read model's PENDING
tasks of the partition are queued and its DISTRIBUTED tasks' work is sent again. The read
model lags (and catches up only once the projections run again, if the leader died), so the
sweep repeats every few seconds for a minute after a take, then every half minute as a
safety net (each sweep reads all PENDING tasks of the read model): PENDING tasks not queued
yet are queued, and for a while after the take (``redeliver_seconds``) DISTRIBUTED tasks are
sent once each — unless this process sent their work itself, as it may have before a
rebalance that gave the partition back to it: its work sender still awaits those miners'
answers. A task whose partition moves on is dropped from the queue; should two owners overlap for a
moment, the decider refuses the second distribution of a task that is no longer PENDING.
Miners' load is shared through the read model, as between edges: the dispatcher takes the
in-flight counts from it now and then, and counts its own assignments in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Protocol

from events import Envelope
from processors.dispatcher import Dispatcher

logger = logging.getLogger(__name__)

# Events that send a task's work to miners.
_ASSIGNING = frozenset({"TaskDistributed", "MinerAssigned"})
# How many tasks whose work was sent from here are remembered (the oldest are long done).
_REMEMBERED = 100_000


class FollowsPartitions(Protocol):
    """Told by the command processor what it owns and what it committed there."""

    def owned(self, partitions: Collection[int]) -> None: ...

    def committed(self, events: Sequence[Envelope]) -> None: ...


class OwnedPartitions:
    """The partitions this process owns and the events committed in them, followed by the
    dispatcher; the deadline keeper asks :meth:`owns` too."""

    def __init__(
        self,
        partition_of: Callable[[str], int],
        *,
        sweep_seconds: float = 2.0,
        settle_seconds: float = 60.0,
        quiet_sweep_seconds: float = 30.0,
        load_seconds: float = 5.0,
        redeliver_seconds: float = 15.0,
    ) -> None:
        self._partition_of = partition_of
        self._sweep_seconds = sweep_seconds
        # Every sweep_seconds for settle_seconds after a partition was taken (the read
        # model catches up with its previous owner), then every quiet_sweep_seconds only:
        # each sweep reads every PENDING task of the read model, documents on Firestore.
        self._settle_seconds = settle_seconds
        self._quiet_sweep_seconds = quiet_sweep_seconds
        self._last_taken = float("-inf")
        self._load_seconds = load_seconds
        self._redeliver_seconds = redeliver_seconds
        self.partitions: frozenset[int] = frozenset()
        # Partitions taken lately, and when: their DISTRIBUTED tasks' work goes out again.
        self._taken: dict[int, float] = {}
        # Tasks whose work this process sent (its sender awaits their miners' answers).
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._swept = asyncio.Event()
        self._events: asyncio.Queue[Sequence[Envelope]] = asyncio.Queue()

    def owns(self, task_id: str) -> bool:
        return self._partition_of(task_id) in self.partitions

    def owned(self, partitions: Collection[int]) -> None:
        now = frozenset(partitions)
        if now == self.partitions:
            return
        taken = now - self.partitions
        self._taken = {p: at for p, at in self._taken.items() if p in now}
        self._taken |= dict.fromkeys(taken, time.monotonic())
        self.partitions = now
        logger.info("dispatching the tasks of partitions %s", sorted(now))
        if taken:
            self._last_taken = time.monotonic()
            self._swept.set()

    def committed(self, events: Sequence[Envelope]) -> None:
        if not events:
            return
        self._events.put_nowait(events)
        for event in events:
            if event.type in _ASSIGNING:
                self._remember_sent(event.task_id)

    def _remember_sent(self, task_id: str) -> None:
        self._sent[task_id] = None
        self._sent.move_to_end(task_id)
        if len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)

    async def _committed(self) -> AsyncIterator[Sequence[Envelope]]:
        while True:
            yield await self._events.get()

    async def run(self, dispatcher: Dispatcher) -> None:
        """Dispatch the owned partitions' tasks as their events are committed; sweep the
        read model every few seconds, and at once when a partition was taken."""
        async with asyncio.TaskGroup() as group:
            group.create_task(dispatcher.follow(self._committed()))
            group.create_task(self._sweep(dispatcher))

    async def _sweep(self, dispatcher: Dispatcher) -> None:
        reported = dispatcher.distributed
        loaded = swept = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._swept.wait(), self._sweep_seconds)
            taken_now = self._swept.is_set()
            self._swept.clear()
            now = time.monotonic()
            if now - loaded > self._load_seconds:
                loaded = now
                await dispatcher.reseed_load()
            settling = now - self._last_taken < self._settle_seconds
            if taken_now or settling or now - swept >= self._quiet_sweep_seconds:
                swept = now
                await self.sweep_once(dispatcher)
            if dispatcher.distributed != reported:
                reported = dispatcher.distributed
                logger.info(
                    "distributed %d tasks here so far (partitions %s)",
                    reported,
                    sorted(self.partitions),
                )

    async def sweep_once(self, dispatcher: Dispatcher) -> int:
        """Queue the owned PENDING tasks of the read model, send the work of the partitions
        taken lately again, and start dispatching; returns how many tasks were queued."""
        now = time.monotonic()
        self._taken = {p: at for p, at in self._taken.items() if now - at < self._redeliver_seconds}

        def redeliver(task_id: str) -> bool:
            if task_id in self._sent or self._partition_of(task_id) not in self._taken:
                return False
            self._remember_sent(task_id)
            return True

        queued = await dispatcher.sweep(redeliver if self._taken else None)
        await dispatcher.start_queued()
        return queued
