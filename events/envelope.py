"""The envelope every stored event travels in, and the per-task hash chain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events.codec import GENESIS_HASH, canonical, decode, format_time, parse_time, sha256_hex


@dataclass(frozen=True, slots=True, init=False)
class Envelope:
    """One immutable, sealed fact in a task's stream.

    ``data`` is the payload exactly as stored (its own ``version``); typed access
    with upcasting goes through :func:`events.registry.payload_of`. ``body`` is
    the canonical encoding of every field but ``hash``; ``hash`` is its SHA-256.
    """

    event_id: str
    task_id: str
    sequence: int
    type: str
    version: int
    occurred_at: str
    causation_id: str | None
    correlation_id: str | None
    actor: str
    data: dict[str, Any]
    prev_hash: str
    hash: str
    body: bytes = field(repr=False, compare=False)
    position: int | None = field(default=None, compare=False)

    def __init__(
        self,
        event_id: str,
        task_id: str,
        sequence: int,
        type: str,
        version: int,
        occurred_at: str,
        causation_id: str | None,
        correlation_id: str | None,
        actor: str,
        data: dict[str, Any],
        prev_hash: str,
        hash: str,
        body: bytes,
        position: int | None = None,
    ) -> None:
        # Frozen, so set as the generated __init__ sets fields, through
        # object.__setattr__, but looked up once rather than once per field:
        # every event read or sealed is built here.
        set_field = object.__setattr__
        set_field(self, "event_id", event_id)
        set_field(self, "task_id", task_id)
        set_field(self, "sequence", sequence)
        set_field(self, "type", type)
        set_field(self, "version", version)
        set_field(self, "occurred_at", occurred_at)
        set_field(self, "causation_id", causation_id)
        set_field(self, "correlation_id", correlation_id)
        set_field(self, "actor", actor)
        set_field(self, "data", data)
        set_field(self, "prev_hash", prev_hash)
        set_field(self, "hash", hash)
        set_field(self, "body", body)
        set_field(self, "position", position)

    @property
    def occurred(self) -> datetime:
        return parse_time(self.occurred_at)

    def recomputed_hash(self) -> str:
        return sha256_hex(self.body)

    def to_document(self) -> dict[str, Any]:
        """The envelope as a JSON document (body fields plus the hash)."""
        document = body_fields(self)
        document["hash"] = self.hash
        return document


def body_fields(envelope: Envelope) -> dict[str, Any]:
    return {
        "id": envelope.event_id,
        "task_id": envelope.task_id,
        "sequence": envelope.sequence,
        "type": envelope.type,
        "version": envelope.version,
        "occurred_at": envelope.occurred_at,
        "causation_id": envelope.causation_id,
        "correlation_id": envelope.correlation_id,
        "actor": envelope.actor,
        "data": envelope.data,
        "prev_hash": envelope.prev_hash,
    }


def seal(
    *,
    event_id: str,
    task_id: str,
    sequence: int,
    type: str,
    version: int,
    occurred_at: datetime,
    actor: str,
    data: dict[str, Any],
    prev_hash: str,
    causation_id: str | None = None,
    correlation_id: str | None = None,
) -> Envelope:
    """Build an envelope, link it to ``prev_hash`` and compute its hash."""
    (envelope,) = seal_run(
        task_id=task_id,
        after=(sequence - 1, prev_hash),
        payloads=[(event_id, type, version, data)],
        occurred_at=occurred_at,
        actor=actor,
        causation_id=causation_id,
        correlation_id=correlation_id,
    )
    return envelope


def seal_run(
    *,
    task_id: str,
    after: tuple[int, str],
    payloads: Sequence[tuple[str, str, int, dict[str, Any]]],
    occurred_at: datetime,
    actor: str,
    causation_id: str | None = None,
    correlation_id: str | None = None,
) -> list[Envelope]:
    """Seal consecutive events of one task that share a moment, actor and cause.

    ``after`` is the (sequence, hash) the run continues; ``payloads`` are
    (event id, type, schema version, data). Each envelope links to the one
    before it, exactly as if each had been sealed alone.
    """
    sequence, previous = after
    at = format_time(occurred_at)
    sealed: list[Envelope] = []
    for event_id, type, version, data in payloads:
        sequence += 1
        body = canonical(
            {
                "id": event_id,
                "task_id": task_id,
                "sequence": sequence,
                "type": type,
                "version": version,
                "occurred_at": at,
                "causation_id": causation_id,
                "correlation_id": correlation_id,
                "actor": actor,
                "data": data,
                "prev_hash": previous,
            }
        )
        hash = sha256_hex(body)
        sealed.append(
            Envelope(
                event_id,
                task_id,
                sequence,
                type,
                version,
                at,
                causation_id,
                correlation_id,
                actor,
                data,
                previous,
                hash,
                body,
            )
        )
        previous = hash
    return sealed


def from_stored(body: bytes, hash: str, position: int | None = None) -> Envelope:
    """Rebuild an envelope from its stored canonical body, without re-checking it."""
    fields = decode(body)
    return _from_fields(fields, body, hash, position)


def from_document(document: dict[str, Any], position: int | None = None) -> Envelope:
    """Rebuild from a JSON document (as written by :meth:`Envelope.to_document`)."""
    fields = {key: value for key, value in document.items() if key != "hash"}
    return _from_fields(fields, canonical(fields), str(document.get("hash", "")), position)


def _from_fields(fields: dict[str, Any], body: bytes, hash: str, position: int | None) -> Envelope:
    return Envelope(
        fields["id"],
        fields["task_id"],
        fields["sequence"],
        fields["type"],
        fields["version"],
        fields["occurred_at"],
        fields["causation_id"],
        fields["correlation_id"],
        fields["actor"],
        fields["data"],
        fields["prev_hash"],
        hash,
        body,
        position,
    )


__all__ = [
    "GENESIS_HASH",
    "Envelope",
    "body_fields",
    "from_document",
    "from_stored",
    "seal",
    "seal_run",
]
