"""Building the checkpointer, its anchor sinks and the weights processor from settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from events import EventLog
from events.capabilities import LogFeatures
from events.codec import canonical
from events.log_chain import ChainHead
from miners.chain_session import ChainSession
from miners.identity import Identity
from miners.weights import WeightsSetter
from processors.anchors import AnchorSink, ChainAnchor, FileAnchors, GcsAnchors
from processors.checkpointer import Checkpointer, Resume
from processors.command_port import TaskCommands
from processors.evaluation import Evaluations
from processors.ledger_commands import LedgerThroughCommands, RunsLedgerCommands
from processors.runtime import Runtime
from processors.weights import WeightsProcessor
from taskledger.settings import Settings, SettingsError


def anchor_sinks(settings: Settings, identity: Identity) -> list[AnchorSink]:
    sinks: list[AnchorSink] = []
    for anchor in settings.accountability.anchors:
        if anchor.startswith("file://"):
            path = Path(anchor.removeprefix("file://")).resolve()
            if path.is_relative_to(settings.data_dir.resolve()):
                raise SettingsError(
                    f"TASKLEDGER_ANCHORS: {anchor} is inside the data directory; an anchor "
                    "must live where whoever can rewrite the log cannot"
                )
            sinks.append(FileAnchors(path))
        elif anchor.startswith("gs://"):
            sinks.append(_gcs_anchors(anchor))
        elif anchor == "chain":
            sinks.append(_chain_anchor(settings, identity))
    return sinks


def _gcs_anchors(url: str) -> GcsAnchors:
    import os

    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    bucket, _, prefix = url.removeprefix("gs://").partition("/")
    if not bucket:
        raise SettingsError("TASKLEDGER_ANCHORS: gs:// needs a bucket name")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    client: Any = (
        storage.Client(
            project="taskledger",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator},
        )
        if emulator
        else storage.Client()
    )
    return GcsAnchors(bucket, (prefix.rstrip("/") + "/") if prefix else "anchors/", client)


def _chain_anchor(settings: Settings, identity: Identity) -> ChainAnchor:
    if not settings.chain_endpoint or settings.netuid is None:
        raise SettingsError(
            "TASKLEDGER_ANCHORS: chain needs TASKLEDGER_CHAIN_ENDPOINT and TASKLEDGER_NETUID"
        )
    from bittensor import Client

    return ChainAnchor(
        ChainSession(Client(settings.chain_endpoint)),
        identity.signer,
        settings.netuid,
        settings.accountability.chain_anchor_seconds,
    )


def resume_for(features: LogFeatures) -> Resume:
    """Where the log's subscription resumes after the chain heads: per partition on a
    partitioned log, else after one position."""
    if features.partitions is not None:

        def after_kafka(heads: dict[int, ChainHead]) -> str | None:
            return canonical({str(p): head.position + 1 for p, head in heads.items()}).decode()

        return after_kafka

    def after_position(heads: dict[int, ChainHead]) -> str | None:
        head = heads.get(0)
        return str(head.position) if head is not None else None

    return after_position


def register_checkpointer(
    runtime: Runtime,
    settings: Settings,
    log: EventLog,
    features: LogFeatures,
    identity: Identity,
    clock: Callable[[], datetime],
) -> Checkpointer | None:
    if features.checkpoints is None:
        return None
    checkpointer = Checkpointer(
        log,
        features.checkpoints,
        identity.signer,
        log_name=features.name,
        partition_of=features.partition_of,
        resume=resume_for(features),
        hashes=features.hashes,
        every_events=settings.accountability.checkpoint_events,
        every_seconds=settings.accountability.checkpoint_seconds,
        sinks=anchor_sinks(settings, identity),
        clock=clock,
    )
    runtime.consumer("checkpointer", checkpointer.run)
    runtime.periodic("checkpointer-tick", 1.0, checkpointer.tick)
    return checkpointer


def register_weights(
    runtime: Runtime,
    settings: Settings,
    log: EventLog,
    features: LogFeatures,
    identity: Identity,
    evaluations: Evaluations,
    clock: Callable[[], datetime],
    commands: TaskCommands | None = None,
) -> WeightsProcessor | None:
    """The ``weights`` processor, when ``TASKLEDGER_SET_WEIGHTS=on``; on Kafka it runs on
    the leader (whose runtime registers it) and appends through ``commands``, the bus."""
    if not settings.accountability.set_weights:
        return None
    if not settings.chain_endpoint or settings.netuid is None:
        raise SettingsError(
            "TASKLEDGER_SET_WEIGHTS=on needs TASKLEDGER_CHAIN_ENDPOINT and TASKLEDGER_NETUID"
        )
    record = None
    if features.partitions is not None:
        # On Kafka only a partition's owner may append to it: through the command bus.
        if not isinstance(commands, RunsLedgerCommands):
            raise SettingsError("TASKLEDGER_SET_WEIGHTS=on on Kafka needs the command bus")
        record = LedgerThroughCommands(commands).record_weights
    from bittensor import Client

    setter = WeightsSetter(
        ChainSession(Client(settings.chain_endpoint)),
        identity.signer,
        settings.netuid,
        settings.accountability.weights_version_key,
    )
    processor = WeightsProcessor(log, evaluations, setter, clock, record=record)
    runtime.periodic("weights", settings.accountability.weights_seconds, processor.tick)
    return processor
