"""A held request is woken by the status feed, not by reading the read model again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from aggregates import TaskState
from http_edge.context import EdgeContext
from http_edge.waiting import Holds, reached, watch
from processors.projection_runner import StatusBroadcaster
from tests.support.histories import T0, Ledger, lifecycle


def _states() -> list[TaskState]:
    """Every state of one approved task, oldest first."""
    ledger = Ledger()
    states = []
    for command in lifecycle("approved", T0, ("hk-a", "hk-b")):
        ledger.execute("task-1", command)
        states.append(ledger.state("task-1"))
    return states


class FrozenStore:
    """A read model that never moves past the state it was given, and counts its reads."""

    def __init__(self, state: TaskState) -> None:
        self.state = state
        self.reads = 0

    async def get_task(self, task_id: str) -> TaskState:
        self.reads += 1
        return self.state


def _context(store: FrozenStore, feed: StatusBroadcaster) -> EdgeContext:
    return cast(EdgeContext, SimpleNamespace(store=store, broadcaster=feed, feed_positioned=None))


async def test_the_feed_wakes_a_held_request_with_no_read_of_its_own() -> None:
    states = _states()
    distributed = next(s for s in states if s.status == "DISTRIBUTED")
    responded = next(s for s in states if s.first_response is not None)
    store, feed, holds = FrozenStore(distributed), StatusBroadcaster(), Holds()
    waiting = asyncio.create_task(
        watch(_context(store, feed), holds, "task-1", "first_response", 0.4)
    )
    await asyncio.sleep(0.05)
    assert holds.held == 1 and not waiting.done()
    feed.publish([distributed._replace(version=distributed.version)])  # no news: still held
    await asyncio.sleep(0.05)
    assert not waiting.done()
    feed.publish([responded])
    document = await asyncio.wait_for(waiting, 1)
    assert document is not None
    assert document["first_response"]["miner_hotkey"] == "hk-a"
    assert store.reads == 1  # the one read when it started
    assert holds.held == 0


async def test_a_held_request_times_out_to_none_and_shutdown_releases_it() -> None:
    distributed = next(s for s in _states() if s.status == "DISTRIBUTED")
    store, feed, holds = FrozenStore(distributed), StatusBroadcaster(), Holds()
    assert await watch(_context(store, feed), holds, "task-1", "approved", 0.2) is None
    waiting = asyncio.create_task(watch(_context(store, feed), holds, "task-1", "approved", 30))
    await asyncio.sleep(0.05)
    holds.release_all()
    assert await asyncio.wait_for(waiting, 1) is None
    assert holds.held == 0
    # A request that arrives while the server shuts down is not held at all.
    reads = store.reads
    late = await asyncio.wait_for(watch(_context(store, feed), holds, "task-1", "approved", 30), 1)
    assert late is None and store.reads == reads


def test_until_names_what_releases_the_request() -> None:
    documents: dict[str, dict[str, Any]] = {
        "pending": {"status": "PENDING", "first_response": None},
        "responded": {"status": "DISTRIBUTED", "first_response": {"miner_hotkey": "hk"}},
        "failed": {"status": "FAILED", "first_response": None},
        "approved": {"status": "APPROVED", "first_response": {"miner_hotkey": "hk"}},
    }
    first = {name for name, d in documents.items() if reached(d, "first_response")}
    approved = {name for name, d in documents.items() if reached(d, "approved")}
    assert first == {"responded", "failed", "approved"}
    assert approved == {"failed", "approved"}
