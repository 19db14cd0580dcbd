"""Streams of the log that are not tasks: the proxy's own facts (weights set on chain).

They live in the same log, so the log chain, checkpoints and the audit cover
them like any task; but they are not tasks: their ids are not task ids (they
start with ``ledger-``), projections of tasks pass them by, and the audit
checks their hashes, links and schema versions without the task transition
table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from events.catalog import Event
from events.codec import GENESIS_HASH
from events.envelope import Envelope, seal
from events.log import EventLog, StaleVersion
from events.registry import to_data

LEDGER_PREFIX = "ledger-"
WEIGHTS_STREAM = "ledger-weights"


def is_ledger_stream(stream_id: str) -> bool:
    return stream_id.startswith(LEDGER_PREFIX)


class WeightsSubmitted(Event):
    """Weights were submitted to the subnet (or the submission failed): what, when, outcome.

    ``uids``/``weights`` are what was sent (hotkeys mapped through the metagraph);
    ``dropped`` the hotkeys with a weight but no UID on the subnet.
    """

    TYPE = "WeightsSubmitted"
    VERSION = 1
    netuid: int
    version_key: int
    uids: list[int]
    weights: list[float]
    hotkeys: list[str]
    dropped: list[str]
    submitted_by: str
    success: bool
    message: str
    block: int | None = None
    block_hash: str | None = None
    extrinsic_id: str | None = None


LEDGER_EVENT_TYPES: dict[str, type[Event]] = {WeightsSubmitted.TYPE: WeightsSubmitted}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
# (type, from version) -> the step to the next version. None yet: WeightsSubmitted is at 1.
LEDGER_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownLedgerEvent(Exception):
    pass


def ledger_payload(envelope: Envelope) -> Event:
    """The envelope's payload as its current typed ledger event, upcast when stored older."""
    cls = LEDGER_EVENT_TYPES.get(envelope.type)
    if cls is None or not 1 <= envelope.version <= cls.VERSION:
        raise UnknownLedgerEvent(f"{envelope.type} v{envelope.version}")
    data, version = envelope.data, envelope.version
    while version < cls.VERSION:
        step = LEDGER_UPCASTERS.get((envelope.type, version))
        if step is None:
            raise UnknownLedgerEvent(f"no upcaster for {envelope.type} v{version}")
        data, version = step(data), version + 1
    return cls.model_validate(data)


async def record_weights(
    event_log: EventLog, event: WeightsSubmitted, at: datetime, actor: str
) -> Envelope:
    """Append the event to the weights stream (after whatever is there now)."""
    for _ in range(5):
        stream = await event_log.read_stream(WEIGHTS_STREAM)
        sequence = stream[-1].sequence if stream else 0
        envelope = seal(
            event_id=str(uuid.uuid4()),
            task_id=WEIGHTS_STREAM,
            sequence=sequence + 1,
            type=event.TYPE,
            version=event.VERSION,
            occurred_at=at,
            actor=actor,
            data=to_data(event),
            prev_hash=stream[-1].hash if stream else GENESIS_HASH,
        )
        try:
            await event_log.append(WEIGHTS_STREAM, sequence, [envelope])
        except StaleVersion:
            continue  # someone else recorded a submission meanwhile: follow it
        return envelope
    raise StaleVersion(WEIGHTS_STREAM, sequence, -1)
