"""Everything the HTTP edge needs, handed in by the composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bittensor.http_auth import NonceStore

from blobs.links import InputLinks
from blobs.port import BlobStore
from events import EventLog
from events.capabilities import LogFeatures
from http_edge.key_store.registry import KeyRegistry
from miners.identity import Identity
from processors.command_port import TaskCommands
from processors.evaluation import Evaluations
from processors.intake import Intake
from processors.pool import MinerPool
from processors.selection import MinerSelector
from processors.status_sink import StatusSink
from projections.store import ReadModelStore


class StatusChanges(Protocol):
    """Where a status stream hears of a task's changes: task states or status documents."""

    def listen(self, task_id: str) -> asyncio.Queue[Any]: ...

    def forget(self, task_id: str, queue: asyncio.Queue[Any]) -> None: ...

    def attach(self, task_id: str, sink: StatusSink) -> None: ...

    def detach(self, task_id: str, sink: StatusSink) -> None: ...


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_upload_bytes: int = 25 * 1024 * 1024
    # 100,000 characters of text (the longest a request takes) are 1.2 MB as JSON when
    # every one is escaped as a surrogate pair (\ud83d\ude00), as json.dumps does by default.
    max_json_bytes: int = 2 * 1024 * 1024
    rate_per_second: float = 200.0
    rate_burst: int = 400
    # Per miner or validator hotkey, counted apart from the clients.
    peer_rate_per_second: float = 200.0
    peer_rate_burst: int = 400
    # A body must arrive at this rate at least, after a grace period (else 408).
    body_min_bytes_per_second: float = 10_000.0
    body_grace_seconds: float = 10.0


@dataclass(frozen=True)
class EdgeContext:
    intake: Intake
    commands: TaskCommands
    store: ReadModelStore
    log: EventLog
    # What the log can do beyond the port (its signed checkpoints, for one).
    log_features: LogFeatures
    evaluations: Evaluations
    blobs: BlobStore
    links: InputLinks
    pool: MinerPool
    selector: MinerSelector
    broadcaster: StatusChanges | None
    identity: Identity
    nonce_store: NonceStore
    api_keys: dict[str, str]  # client name -> API key (the edge keeps only hashes)
    limits: EdgeLimits
    clock: Callable[[], datetime]
    # Processor figures for /api/v1/health and /metrics (lag, restarts); may be empty.
    processor_figures: Callable[[], Awaitable[dict[str, Any]]]
    # Where miners and validators reach the proxy (links are built on it), and
    # how long an input link stays valid.
    public_url: str = "http://127.0.0.1:8080"
    input_link_seconds: int = 300
    # /v1/audio/*: answer with "first_response" or "approved", waiting up to this long.
    openai_answer: str = "first_response"
    openai_timeout_seconds: float = 60.0
    # Client keys as data (issue 16): when set, clients are authenticated against it
    # rather than ``api_keys``; operators by ``admin_keys`` (name -> admin key).
    client_keys: KeyRegistry | None = None
    admin_keys: dict[str, str] = field(default_factory=dict)
    # Where signed checkpoints are anchored (TASKLEDGER_ANCHORS), shown on the dashboard.
    anchor_sinks: tuple[str, ...] = ()
    # Set while a status feed from elsewhere (the Kafka status topic) reads from a known
    # place; None when the feed is this process's own projection, always in place.
    feed_positioned: asyncio.Event | None = None
