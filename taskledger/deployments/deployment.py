"""What a deployment gives the composition root: one per event-log backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from events import EventLog
from events.capabilities import LogFeatures
from http_edge.context import StatusChanges
from processors.command_port import TaskCommands
from processors.dispatcher import Dispatcher
from processors.kafka.projection_workers import ProjectionWorker
from processors.projection_child import ProjectionChild
from processors.projection_runner import StatusBroadcaster
from processors.runtime import Runtime
from projections.store import ReadModelStore

# Registers the deadline keeper and the dispatcher's retries for the tasks the predicate
# says are this process's (None: every task) in a runtime, and returns the dispatcher, for
# the deployment to run from where its tasks are heard of.
RegistersOwned = Callable[[Runtime, Callable[[str], bool] | None], Dispatcher]
# Registers what runs once in a deployment (projections, retention, checkpointer, weights)
# in a runtime, built afresh each call.
RegistersSingletons = Callable[[Runtime], None]


class Deployment(Protocol):
    """The log, how commands reach it, where status changes are heard, and where the
    processors run: what differs between backends, built once from settings."""

    @property
    def log(self) -> EventLog: ...

    @property
    def features(self) -> LogFeatures: ...

    @property
    def commands(self) -> TaskCommands: ...

    @property
    def status_feed(self) -> StatusChanges | None:
        """Where status streams hear of changes when not from this process's projection."""
        ...

    @property
    def feed_positioned(self) -> asyncio.Event | None:
        """Set while the status feed reads from a known place (None: always in place)."""
        ...

    @property
    def leader_runtime(self) -> Runtime | None:
        """The runtime of the processors that run only while this process leads."""
        ...

    def add_processors(
        self, runtime: Runtime, owned: RegistersOwned, singletons: RegistersSingletons
    ) -> None:
        """Run the processors: the dispatching of the tasks this process owns in
        ``runtime``; the singletons there too, or on whichever process leads."""
        ...

    def projection_worker(
        self, store: ReadModelStore, broadcaster: StatusBroadcaster, max_batch: int
    ) -> ProjectionWorker | None:
        """A member of the group of projection workers (Kafka), or None where the leader
        projects the whole log (embedded)."""
        ...

    def projection_child(
        self, store: ReadModelStore, store_path: Path | None
    ) -> ProjectionChild | None:
        """A child process to project in, when log and read models are files it can open."""
        ...

    async def start_edge(self) -> None:
        """Be ready to take an edge's commands and status streams at once."""
        ...

    async def resign(self) -> None:
        """Stop what runs only while this process leads."""
        ...

    async def close(self) -> None:
        """Close the status feed, the command transport and the log."""
        ...
