"""Folds the log into the read models, exactly once per event under at-least-once delivery.

Each task's stored state records the last sequence applied (its version); an
event at or below it is a repeat and changes nothing, neither the task nor
the miner statistics. The batch's updates and its checkpoint commit together.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from aggregates import TaskState, evolve
from events import (
    Batch,
    Envelope,
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
from projections.miner_stats import MinerStats, MinerTally
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
        miner_events = [e for e in batch.events if e.type in _MINER_EVENT_TYPES]
        hotkeys = _hotkeys(miner_events)
        miners = await self.store.get_miners(hotkeys) if hotkeys else {}
        changed: dict[str, TaskState] = {}
        tallies = _MinerTallies(miners)
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
                tallies.count(event)
        try:
            await self.store.commit(
                self.consumer,
                batch.checkpoint,
                list(changed.values()),
                tallies.stats(),
            )
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


def _hotkeys(envelopes: Sequence[Envelope]) -> list[str]:
    found: dict[str, None] = {}
    for envelope in envelopes:
        data = envelope.data
        if envelope.type == "TaskDistributed":
            for assignment in data.get("assignments", ()):
                found[assignment["hotkey"]] = None
        elif envelope.type == "MinerAssigned":
            found[data["assignment"]["hotkey"]] = None
        elif envelope.type == "TaskEvaluated":
            for hotkey in data.get("rewards", {}):
                found[hotkey] = None
        elif "hotkey" in data:
            found[data["hotkey"]] = None
    return list(found)


class _MinerTallies:
    """The batch's miner statistics: one tally per miner, starting from what the store holds."""

    def __init__(self, stored: dict[str, MinerStats]) -> None:
        self._stored = stored
        self._tallies: dict[str, MinerTally] = {}

    def count(self, event: Event) -> None:
        match event:
            case TaskDistributed():
                for assignment in event.assignments:
                    self._of(assignment.hotkey).count_assignment()
            case MinerAssigned():
                self._of(event.assignment.hotkey).count_assignment()
            case MinerResponded():
                self._of(event.hotkey).count_response(event.latency_ms)
            case MinerFailed():
                self._of(event.hotkey).count_failure()
            case MinerTimedOut():
                self._of(event.hotkey).count_timeout()
            case TaskEvaluated():
                for hotkey, reward in event.rewards.items():
                    self._of(hotkey).count_reward(reward)

    def stats(self) -> list[MinerStats]:
        return [tally.stats() for tally in self._tallies.values()]

    def _of(self, hotkey: str) -> MinerTally:
        tally = self._tallies.get(hotkey)
        if tally is None:
            tally = self._tallies[hotkey] = MinerTally(
                self._stored.get(hotkey) or MinerStats(hotkey)
            )
        return tally
