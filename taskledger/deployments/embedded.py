"""The embedded deployment: one SQLite log, commands decided in this process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from events import EventLog
from events.capabilities import LogFeatures
from events.sqlite_log import SqliteEventLog
from http_edge.context import StatusChanges
from processors.command_port import TaskCommands
from processors.commands import EmbeddedCommands
from processors.kafka.projection_workers import ProjectionWorker
from processors.projection_child import ProjectionChild
from processors.projection_runner import StatusBroadcaster
from processors.runtime import Runtime
from projections.store import ReadModelStore
from taskledger.deployments.deployment import RegistersOwned, RegistersSingletons
from taskledger.projection_process import ProjectionProcess


def log_features(log: SqliteEventLog) -> LogFeatures:
    """All of them: the embedded log keeps its checkpoints and has one run of positions."""
    return LogFeatures(name=log.log_name, checkpoints=log, latest=log, head=log, hashes=log)


class EmbeddedDeployment:
    def __init__(self, log: SqliteEventLog) -> None:
        self._sqlite = log
        self.log: EventLog = log
        self.features = log_features(log)
        self.commands: TaskCommands = EmbeddedCommands(log)
        # The edge hears of changes from the projection in its own process, always in place.
        self.status_feed: StatusChanges | None = None
        self.feed_positioned: asyncio.Event | None = None
        # Nothing runs on leadership: one process writes the log.
        self.leader_runtime: Runtime | None = None

    def add_processors(
        self, runtime: Runtime, owned: RegistersOwned, singletons: RegistersSingletons
    ) -> None:
        """All of them, in this process's runtime: it owns every task, and hears of them
        from the log."""
        singletons(runtime)
        dispatcher = owned(runtime, None)
        runtime.consumer("dispatcher", dispatcher.run)

    def projection_worker(
        self, store: ReadModelStore, broadcaster: StatusBroadcaster, max_batch: int
    ) -> ProjectionWorker | None:
        """None: the leader projects the whole log."""
        return None

    def projection_child(
        self, store: ReadModelStore, store_path: Path | None
    ) -> ProjectionChild | None:
        """Only for a process without an edge: the edge's status streams hear of changes
        from the projection in their own process."""
        if store_path is None:
            return None
        log_path = self._sqlite.path
        return ProjectionChild(lambda: ProjectionProcess(log_path, store_path), store)

    async def start_edge(self) -> None:
        """Nothing to start: commands are decided in this process."""

    async def resign(self) -> None:
        """Nothing runs on leadership here."""

    async def close(self) -> None:
        await self._sqlite.close()
