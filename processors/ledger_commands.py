"""The proxy's own facts on Kafka: a command that appends to a ledger stream.

On Kafka only a partition's owner appends to it (its transactional writer holds the
partition's heads), so the leader's ``weights`` processor cannot append its
``WeightsSubmitted`` events itself. It sends :class:`RecordLedgerEvent` through the
command bus instead, like any task command: keyed by the ledger stream's id, in that
stream's partition, the owning command processor seals the event after the stream's
head and appends it in its transaction (or, when the leader owns that partition, in
the leader's own next transaction). The event's data is checked against its ledger
type before anything is written; a command for a stream that is not a ledger stream,
or with a type or version the ledger does not know, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from events import Envelope
from events.ledger import WEIGHTS_STREAM, WeightsSubmitted
from events.registry import to_data


@dataclass(frozen=True, slots=True)
class RecordLedgerEvent:
    """Append one event of ``type``/``version`` with ``data`` to the command's ledger stream."""

    type: str
    version: int
    data: dict[str, Any]
    now: datetime


@runtime_checkable
class RunsLedgerCommands(Protocol):
    async def record_ledger(
        self, stream_id: str, command: RecordLedgerEvent, *, actor: str
    ) -> Envelope: ...


class LedgerThroughCommands:
    """Records ``WeightsSubmitted`` events through the command bus (the Kafka path)."""

    def __init__(self, bus: RunsLedgerCommands) -> None:
        self._bus = bus

    async def record_weights(self, event: WeightsSubmitted, at: datetime, actor: str) -> Envelope:
        command = RecordLedgerEvent(event.TYPE, event.VERSION, to_data(event), at)
        return await self._bus.record_ledger(WEIGHTS_STREAM, command, actor=actor)
