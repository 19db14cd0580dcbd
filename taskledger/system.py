"""The composition root: builds one taskledger process from settings."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from blobs.links import InputLinks
from blobs.port import BlobStore
from events import EventLog
from http_edge.context import EdgeContext, EdgeLimits
from http_edge.key_store.registry import KeyRegistry
from miners.client import MinerClient
from miners.directory import (
    CombinedDirectory,
    MinerDirectory,
    MinerInfo,
    StaticMinerDirectory,
    load_miners_file,
)
from miners.identity import Identity
from processors.checkpointer import Checkpointer
from processors.command_port import TaskCommands
from processors.commands import utc_now
from processors.deadlines import DeadlineKeeper
from processors.dispatcher import Dispatcher
from processors.evaluation import Evaluations
from processors.intake import Intake
from processors.kafka.projection_workers import ProjectionWorker
from processors.pool import MinerPool
from processors.projection_child import ProjectionChild
from processors.projection_runner import (
    MAX_BATCH,
    SHARED_LOOP_MAX_BATCH,
    ProjectionRunner,
    StatusBroadcaster,
)
from processors.retention import Retention
from processors.runtime import Runtime
from processors.selection import MinerSelector
from processors.settings import ProcessorSettings
from processors.work import WorkSender
from projections import Projector
from projections.store import ReadModelStore
from taskledger.anchoring import register_checkpointer, register_weights
from taskledger.backends import (
    ClosingNonceStore,
    open_blobs,
    open_key_store,
    open_nonce_store,
    open_read_models,
    sqlite_read_models_path,
)
from taskledger.deployments import Deployment, open_deployment
from taskledger.deployments.link_secret import link_secret
from taskledger.settings import Settings, SettingsError


def processor_settings(settings: Settings) -> ProcessorSettings:
    return ProcessorSettings(
        public_url=settings.base_url,
        miners_per_type=dict(settings.miners_per_type),
        miner_timeout_seconds=settings.miner_timeout_seconds,
        task_deadline_seconds=settings.task_deadline_seconds,
        retention_seconds=settings.retention_seconds,
        retention_tick_seconds=min(60.0, max(1.0, settings.retention_seconds / 10)),
    )


def miner_directory(
    settings: Settings, extra_miners: Iterable[MinerInfo], extra_validators: Iterable[str]
) -> MinerDirectory:
    miners = list(extra_miners)
    if settings.miners_file is not None:
        miners += load_miners_file(settings.miners_file)
    validators = (*settings.validator_hotkeys, *extra_validators)
    static = StaticMinerDirectory(miners, validators)
    if settings.chain_endpoint and settings.netuid is not None:
        from miners.metagraph_directory import ChainMetagraphFetch, MetagraphDirectory

        fetch = ChainMetagraphFetch(settings.chain_endpoint, settings.netuid)
        chain = MetagraphDirectory(fetch, refresh_seconds=settings.metagraph_refresh_seconds)
        return CombinedDirectory(static, chain)
    return static


@dataclass
class System:
    settings: Settings
    identity: Identity
    deployment: Deployment
    store: ReadModelStore
    blobs: BlobStore
    pool: MinerPool
    selector: MinerSelector
    client: MinerClient
    sender: WorkSender
    intake: Intake
    evaluations: Evaluations
    broadcaster: StatusBroadcaster
    links: InputLinks
    nonce_store: ClosingNonceStore
    clock: Callable[[], datetime]
    runtime: Runtime = field(default_factory=Runtime)
    projection_runner: ProjectionRunner | None = None
    # On Kafka, this process's member of the projection workers' group (None: embedded).
    projection_worker: ProjectionWorker | None = None
    # On the embedded log, a processors process without an edge may project in a child
    # (TASKLEDGER_PROJECTION=process).
    projection_child: ProjectionChild | None = None
    checkpointer: Checkpointer | None = None
    # Client keys as data, shared by every edge (issue 16); None on processors-only.
    keys: KeyRegistry | None = None

    @property
    def log(self) -> EventLog:
        return self.deployment.log

    @property
    def commands(self) -> TaskCommands:
        return self.deployment.commands

    @property
    def leader_runtime(self) -> Runtime | None:
        return self.deployment.leader_runtime

    def edge_context(self) -> EdgeContext:
        return EdgeContext(
            intake=self.intake,
            commands=self.commands,
            store=self.store,
            log=self.log,
            log_features=self.deployment.features,
            evaluations=self.evaluations,
            blobs=self.blobs,
            links=self.links,
            pool=self.pool,
            selector=self.selector,
            broadcaster=self.deployment.status_feed or self.broadcaster,
            identity=self.identity,
            nonce_store=self.nonce_store,
            api_keys=dict(self.settings.api_keys),
            limits=EdgeLimits(
                max_upload_bytes=self.settings.max_upload_bytes,
                rate_per_second=self.settings.rate_per_second,
                rate_burst=self.settings.rate_burst,
                peer_rate_per_second=self.settings.peer_rate_per_second,
                peer_rate_burst=self.settings.peer_rate_burst,
                body_min_bytes_per_second=self.settings.body_min_bytes_per_second,
                body_grace_seconds=self.settings.body_grace_seconds,
            ),
            clock=self.clock,
            processor_figures=self.processor_figures,
            public_url=self.settings.base_url,
            openai_answer=self.settings.openai_answer,
            openai_timeout_seconds=self.settings.openai_timeout_seconds,
            client_keys=self.keys,
            admin_keys=dict(self.settings.admin_keys),
            anchor_sinks=tuple(self.settings.accountability.anchors),
            feed_positioned=self.deployment.feed_positioned,
        )

    async def processor_figures(self) -> dict[str, Any]:
        failures = self.runtime.failures()
        if self.leader_runtime is not None:
            failures |= self.leader_runtime.failures()
        figures: dict[str, Any] = {"restarts": failures}
        head = self.deployment.features.head
        position = await self._projection_position()
        if head is not None and position is not None:
            figures["projection_lag_events"] = max(0, await head.head_position() - position)
        return figures

    async def _projection_position(self) -> int | None:
        if self.projection_child is not None:
            return await self.projection_child.position()
        return self.projection_runner.position if self.projection_runner is not None else None

    async def _project(self) -> None:
        if self.projection_child is not None:
            await self.projection_child.run()
        elif self.projection_runner is not None:
            await self.projection_runner.run()

    def add_processors(self) -> None:
        """Register the processors where the deployment runs them.

        On Kafka the projections are not the leader's: projection workers share the events
        partitions, one of them here unless TASKLEDGER_PROJECTION=workers leaves them to
        processes of their own (``serve --role projections``).
        """
        # Beside the command processor and the dispatcher: batches that hold the loop briefly.
        self.projection_worker = self.deployment.projection_worker(
            self.store, self.broadcaster, SHARED_LOOP_MAX_BATCH
        )
        if self.projection_worker is not None and self.settings.projection != "workers":
            self.runtime.consumer("projections", self.projection_worker.run)
        self.deployment.add_processors(
            self.runtime, self._register_owned, self._register_singletons
        )

    def add_projections(self) -> None:
        """Only a projection worker (``serve --role projections``, Kafka only)."""
        worker = self.deployment.projection_worker(self.store, self.broadcaster, MAX_BATCH)
        if worker is None:
            raise SettingsError(
                "--role projections needs a Kafka event log (TASKLEDGER_EVENT_LOG=kafka://…): "
                "on the embedded log the processors project"
            )
        self.projection_worker = worker
        self.runtime.consumer("projections", worker.run)

    def _register_owned(self, runtime: Runtime, owns: Callable[[str], bool] | None) -> Dispatcher:
        """The deadline keeper and the dispatcher's retries for the tasks ``owns`` says are
        this process's (None: all of them), built afresh; the dispatcher, for the deployment
        to run from where it hears of its tasks."""
        settings = processor_settings(self.settings)
        dispatcher = Dispatcher(
            self.commands,
            self.log,
            self.store,
            self.pool,
            self.selector,
            self.sender,
            settings,
            self.clock,
            owns=owns,
        )
        keeper = DeadlineKeeper(self.commands, self.store, self.sender, self.clock, owns=owns)
        runtime.periodic("deadline-keeper", settings.deadline_tick_seconds, keeper.tick)
        runtime.periodic("dispatcher-retry", 1.0, dispatcher.retry_waiting)
        return dispatcher

    def _register_singletons(self, runtime: Runtime) -> None:
        """What runs once in a deployment: retention, checkpointer and weights, and the
        projections unless projection workers share them (Kafka), built afresh."""
        settings = processor_settings(self.settings)
        if self.projection_worker is None:
            self.projection_runner = ProjectionRunner(
                self.log,
                Projector(self.store),
                self.broadcaster,
                max_batch=SHARED_LOOP_MAX_BATCH,
            )
            runtime.consumer("projections", self._project)
        retention = Retention(
            self.commands,
            self.store,
            self.blobs,
            timedelta(seconds=settings.retention_seconds),
            self.clock,
        )
        runtime.periodic("retention", settings.retention_tick_seconds, retention.tick)
        features = self.deployment.features
        self.checkpointer = register_checkpointer(
            runtime, self.settings, self.log, features, self.identity, self.clock
        )
        register_weights(
            runtime,
            self.settings,
            self.log,
            features,
            self.identity,
            self.evaluations,
            self.clock,
            self.commands,
        )

    async def start(self, *, edge: bool = True, processors: bool = True) -> None:
        await self.pool.refresh()
        if edge:
            await self.deployment.start_edge()
        if edge and self.keys is not None:
            await self.keys.start()
        if (
            processors
            and not edge
            and self.settings.projection == "process"
            and self.projection_runner is not None
        ):
            self.projection_child = self.deployment.projection_child(
                self.store, sqlite_read_models_path(self.settings)
            )
        if processors:
            await self.runtime.start()

    async def close(self) -> None:
        if self.keys is not None:
            await self.keys.stop()
            await self.keys.store.close()
        await self.runtime.stop()
        await self.deployment.resign()
        if self.checkpointer is not None:
            await self.checkpointer.close()
        await self.sender.drain()
        await self.client.close()
        await self.deployment.close()
        await self.store.close()
        await self.blobs.close()
        self.nonce_store.close()


def build_system(
    settings: Settings,
    *,
    extra_miners: Iterable[MinerInfo] = (),
    extra_validators: Iterable[str] = (),
    clock: Callable[[], datetime] = utc_now,
    identity: Identity | None = None,
    with_processors: bool = True,
) -> System:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = identity or Identity.load_or_create(settings.wallets_dir, settings.wallet)
    deployment = open_deployment(settings)
    commands = deployment.commands
    store = open_read_models(settings)
    blobs = open_blobs(settings)
    directory = miner_directory(settings, extra_miners, extra_validators)
    proc_settings = processor_settings(settings)
    pool = MinerPool(directory, proc_settings.directory_refresh_seconds)
    selector = MinerSelector()
    client = MinerClient(
        identity,
        timeout_seconds=settings.miner_timeout_seconds,
        max_connections=512,
        global_only=not settings.allow_private_miners,
    )
    secret = link_secret(settings)
    links = InputLinks(secret)
    sender = WorkSender(commands, client, pool, selector, blobs, links, proc_settings, clock)
    system = System(
        settings=settings,
        identity=identity,
        deployment=deployment,
        store=store,
        blobs=blobs,
        pool=pool,
        selector=selector,
        client=client,
        sender=sender,
        # Domain-separated from the links' own use of the deployment secret.
        intake=Intake(
            commands,
            proc_settings,
            clock,
            idempotency_secret=hmac.new(secret, b"idempotency", hashlib.sha256).digest(),
        ),
        evaluations=Evaluations(commands, store, clock),
        broadcaster=StatusBroadcaster(),
        links=links,
        nonce_store=open_nonce_store(settings),
        clock=clock,
    )
    system.keys = KeyRegistry(open_key_store(settings), clock, settings.api_keys)
    system.intake.quota = system.keys
    if with_processors:
        system.add_processors()
    return system
