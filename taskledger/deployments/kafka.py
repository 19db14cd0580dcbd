"""The Kafka deployment: commands go to their partition's owner, status comes from the
status topic, every processor process dispatches the tasks of the partitions it owns,
projection workers share the events partitions, and what runs once in a deployment
(retention, checkpointer, weights) runs on one leader."""

from __future__ import annotations

import asyncio
from pathlib import Path

from events import EventLog
from events.capabilities import LogFeatures
from events.kafka import KafkaEventLog
from http_edge.context import StatusChanges
from processors.command_port import TaskCommands
from processors.kafka.bus import KafkaCommandBus
from processors.kafka.owned import OwnedPartitions
from processors.kafka.processor import KafkaCommandProcessor
from processors.kafka.projection_workers import ProjectionWorker
from processors.kafka.status_topic import StatusTopicFeed
from processors.projection_child import ProjectionChild
from processors.projection_runner import StatusBroadcaster
from processors.runtime import Runtime
from projections.store import ReadModelStore
from taskledger.deployments.deployment import RegistersOwned, RegistersSingletons


def log_features(log: KafkaEventLog) -> LogFeatures:
    """Checkpoints kept in the checkpoints topic, positions per partition."""
    return LogFeatures(name=log.log_name, checkpoints=log, partitions=log)


class KafkaDeployment:
    def __init__(self, log: KafkaEventLog) -> None:
        self._kafka = log
        self.log: EventLog = log
        self.features = log_features(log)
        # A task changes only in its partition owner's transaction: commands go there.
        self._bus = KafkaCommandBus(log)
        self.commands: TaskCommands = self._bus
        self._feed = StatusTopicFeed(log)
        self.status_feed: StatusChanges | None = self._feed
        self.feed_positioned: asyncio.Event | None = self._feed.positioned
        # The singletons, while this process leads.
        self.leader_runtime: Runtime | None = None
        self._singletons: RegistersSingletons | None = None
        self._leader_lock = asyncio.Lock()

    def add_processors(
        self, runtime: Runtime, owned: RegistersOwned, singletons: RegistersSingletons
    ) -> None:
        """The command processor and the dispatching of the partitions it owns here; the
        singletons on whichever process leads (``lead``)."""
        partitions = OwnedPartitions(self._kafka.partition_of)
        processor = KafkaCommandProcessor(self._kafka, on_leadership=self.lead, follower=partitions)
        self._singletons = singletons
        # This process's commands for the partitions it owns skip the broker.
        self._bus.attach(processor)
        dispatcher = owned(runtime, partitions.owns)
        # Tasks created in the partitions owned here are distributed at once.
        processor.distributor = dispatcher
        runtime.consumer("dispatcher", lambda: partitions.run(dispatcher))
        runtime.consumer("command-processor", processor.run)

    async def lead(self, leading: bool) -> None:
        async with self._leader_lock:
            if leading and self.leader_runtime is None and self._singletons is not None:
                runtime = Runtime()
                self._singletons(runtime)
                await runtime.start()
                self.leader_runtime = runtime
            elif not leading and self.leader_runtime is not None:
                runtime, self.leader_runtime = self.leader_runtime, None
                await runtime.stop()

    def projection_child(
        self, store: ReadModelStore, store_path: Path | None
    ) -> ProjectionChild | None:
        """None: a child process projects only from an embedded log's file."""
        return None

    async def start_edge(self) -> None:
        await self._bus.start()  # or the first request would wait for it
        await self._feed.start()

    async def resign(self) -> None:
        await self.lead(False)

    async def close(self) -> None:
        await self._feed.close()
        await self._bus.close()
        await self._kafka.close()

    def projection_worker(
        self, store: ReadModelStore, broadcaster: StatusBroadcaster, max_batch: int
    ) -> ProjectionWorker | None:
        """A member of ``<prefix>.projections``: any number share the events partitions."""
        return ProjectionWorker(self._kafka, store, broadcaster, max_batch=max_batch)
