"""Folds the log into the read models, exactly once per event under at-least-once delivery.

Each task's stored state records the last sequence applied (its version); an
event at or below it is a repeat and changes nothing, neither the task nor
the miner statistics. The batch's updates and its checkpoint commit together.

Several projectors may write one store at once (projection workers sharing the
log's partitions, or a worker that lost its partitions and has not noticed yet):
the store writes a task only above its stored version, and counts an event into
the miner statistics only when it is above the task's version *as read inside
the commit's own transaction*, onto the miner rows read there too. What a
projector read before its commit only saves reads; it decides nothing.
"""

from __future__ import annotations

from collections import OrderedDict

from aggregates import TaskState, evolve
from events import (
    Batch,
    Event,
    MinerAssigned,
    MinerFailed,
    MinerResponded,
    MinerTimedOut,
    TaskDistributed,
    TaskEvaluated,
    parse_time,
    payload_of,
)
from events.ledger import is_ledger_stream
from projections.checkpoints import checkpoint_advances
from projections.miner_stats import MinerCount
from projections.store import ReadModelStore

CONSUMER = "projections"


class Projector:
    """Folds batches into the store; keeps the task states it committed, to skip reading them.

    The kept states are only trusted while the store's checkpoint is the one
    this projector committed last: if anyone else moved it (a second writer,
    a reset before a rebuild), they are dropped and read from the store again.
    """

    def __init__(
        self, store: ReadModelStore, consumer: str = CONSUMER, *, cache_size: int = 4_096
    ) -> None:
        self.store = store
        self.consumer = consumer
        self._states: OrderedDict[str, TaskState] = OrderedDict()
        self._cache_size = cache_size
        self._committed: str | None = None

    async def checkpoint(self) -> str | None:
        return await self.store.checkpoint(self.consumer)

    async def apply(self, batch: Batch) -> list[TaskState]:
        """Apply a batch; returns the task states it changed."""
        task_ids = list(
            dict.fromkeys(e.task_id for e in batch.events if not is_ledger_stream(e.task_id))
        )
        stored_checkpoint = await self.checkpoint()
        if stored_checkpoint is None or stored_checkpoint != self._committed:
            self._states.clear()
        states = await self._states_of(task_ids)
        changed: dict[str, TaskState] = {}
        counts: list[MinerCount] = []
        for envelope in batch.events:
            if is_ledger_stream(envelope.task_id):
                continue  # not a task: the proxy's own facts (weights on chain)
            state = changed.get(envelope.task_id) or states.get(envelope.task_id)
            if state is None:
                state = TaskState(envelope.task_id)
            if envelope.sequence <= state.version:
                continue  # already applied: a redelivery
            event = payload_of(envelope)
            state = evolve(state, event, parse_time(envelope.occurred_at))
            changed[envelope.task_id] = state
            if envelope.type in _MINER_EVENT_TYPES:
                counts.extend(_counts(envelope.task_id, envelope.sequence, event))
        try:
            await self.store.commit(self.consumer, batch.checkpoint, list(changed.values()), counts)
        except BaseException:
            self._states.clear()
            self._committed = None
            raise
        self._committed = (
            batch.checkpoint
            if checkpoint_advances(batch.checkpoint, stored_checkpoint)
            else stored_checkpoint
        )
        self._keep(changed)
        return list(changed.values())

    async def _states_of(self, task_ids: list[str]) -> dict[str, TaskState]:
        states: dict[str, TaskState] = {}
        missing: list[str] = []
        for task_id in task_ids:
            state = self._states.get(task_id)
            if state is None:
                missing.append(task_id)
            else:
                states[task_id] = state
        if missing:
            states.update(await self.store.get_tasks(missing))
        return states

    def _keep(self, changed: dict[str, TaskState]) -> None:
        if self._cache_size <= 0:
            return
        kept = self._states
        for task_id, state in changed.items():
            kept[task_id] = state
            kept.move_to_end(task_id)
        while len(kept) > self._cache_size:
            kept.popitem(last=False)


_MINER_EVENT_TYPES = frozenset(
    {
        "TaskDistributed",
        "MinerAssigned",
        "MinerResponded",
        "MinerFailed",
        "MinerTimedOut",
        "TaskEvaluated",
    }
)


def _counts(task_id: str, sequence: int, event: Event) -> list[MinerCount]:
    match event:
        case TaskDistributed():
            return [MinerCount(task_id, sequence, a.hotkey, "assigned") for a in event.assignments]
        case MinerAssigned():
            return [MinerCount(task_id, sequence, event.assignment.hotkey, "assigned")]
        case MinerResponded():
            return [MinerCount(task_id, sequence, event.hotkey, "responded", event.latency_ms)]
        case MinerFailed():
            return [MinerCount(task_id, sequence, event.hotkey, "failed")]
        case MinerTimedOut():
            return [MinerCount(task_id, sequence, event.hotkey, "timed_out")]
        case TaskEvaluated():
            return [
                MinerCount(task_id, sequence, hotkey, "rewarded", reward)
                for hotkey, reward in event.rewards.items()
            ]
    return []
