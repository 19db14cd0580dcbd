"""Folds the log into the read models, exactly once per event under at-least-once delivery.

Each task's stored state records the last sequence applied (its version); an
event at or below it is a repeat and changes nothing, neither the task nor
the miner statistics. The batch's updates and its checkpoint commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aggregates import TaskState, evolve
from events import (
    Batch,
    Envelope,
    MinerAssigned,
    MinerFailed,
    MinerResponded,
    MinerTimedOut,
    TaskDistributed,
    TaskEvaluated,
    parse_time,
    payload_of,
)
from projections.miner_stats import MinerStats
from projections.store import ReadModelStore

CONSUMER = "projections"

_Update = Callable[[MinerStats], MinerStats]


class Projector:
    def __init__(self, store: ReadModelStore, consumer: str = CONSUMER) -> None:
        self.store = store
        self.consumer = consumer

    async def checkpoint(self) -> str | None:
        return await self.store.checkpoint(self.consumer)

    async def apply(self, batch: Batch) -> list[TaskState]:
        """Apply a batch; returns the task states it changed."""
        task_ids = list(dict.fromkeys(envelope.task_id for envelope in batch.events))
        states = await self.store.get_tasks(task_ids)
        miner_events = [e for e in batch.events if e.type in _MINER_EVENT_TYPES]
        hotkeys = _hotkeys(miner_events)
        miners = await self.store.get_miners(hotkeys) if hotkeys else {}
        changed: dict[str, TaskState] = {}
        touched_miners: dict[str, MinerStats] = {}
        for envelope in batch.events:
            state = changed.get(envelope.task_id) or states.get(envelope.task_id)
            if state is None:
                state = TaskState(envelope.task_id)
            if envelope.sequence <= state.version:
                continue  # already applied: a redelivery
            event = payload_of(envelope)
            state = evolve(state, event, parse_time(envelope.occurred_at))
            changed[envelope.task_id] = state
            for hotkey, update in _miner_updates(event):
                current = touched_miners.get(hotkey) or miners.get(hotkey) or MinerStats(hotkey)
                touched_miners[hotkey] = update(current)
        await self.store.commit(
            self.consumer, batch.checkpoint, list(changed.values()), list(touched_miners.values())
        )
        return list(changed.values())


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


def _miner_updates(event: object) -> list[tuple[str, _Update]]:
    match event:
        case TaskDistributed():
            return [(a.hotkey, MinerStats.on_assigned) for a in event.assignments]
        case MinerAssigned():
            return [(event.assignment.hotkey, MinerStats.on_assigned)]
        case MinerResponded():
            latency = event.latency_ms
            return [(event.hotkey, lambda stats: stats.on_responded(latency))]
        case MinerFailed():
            return [(event.hotkey, MinerStats.on_failed)]
        case MinerTimedOut():
            return [(event.hotkey, MinerStats.on_timed_out)]
        case TaskEvaluated():
            return [(hotkey, _rewarded(reward)) for hotkey, reward in event.rewards.items()]
    return []


def _rewarded(reward: float) -> _Update:
    return lambda stats: stats.on_rewarded(reward)
