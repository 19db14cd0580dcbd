"""Everything the HTTP edge needs, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bittensor.http_auth import NonceStore

from blobs.links import InputLinks
from blobs.port import BlobStore
from events import EventLog
from miners.identity import Identity
from processors.commands import CommandHandler
from processors.evaluation import Evaluations
from processors.intake import Intake
from processors.pool import MinerPool
from processors.projection_runner import StatusBroadcaster
from processors.selection import MinerSelector
from projections.store import ReadModelStore


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024
    rate_per_second: float = 200.0
    rate_burst: int = 400


@dataclass(frozen=True)
class EdgeContext:
    intake: Intake
    handler: CommandHandler
    store: ReadModelStore
    log: EventLog
    evaluations: Evaluations
    blobs: BlobStore
    links: InputLinks
    pool: MinerPool
    selector: MinerSelector
    broadcaster: StatusBroadcaster | None
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
