"""The envelope every stored event travels in, and the per-task hash chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events.codec import GENESIS_HASH, canonical, decode, format_time, parse_time, sha256_hex


@dataclass(frozen=True, slots=True)
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
    fields: dict[str, Any] = {
        "id": event_id,
        "task_id": task_id,
        "sequence": sequence,
        "type": type,
        "version": version,
        "occurred_at": format_time(occurred_at),
        "causation_id": causation_id,
        "correlation_id": correlation_id,
        "actor": actor,
        "data": data,
        "prev_hash": prev_hash,
    }
    body = canonical(fields)
    return _from_fields(fields, body, sha256_hex(body), None)


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
        event_id=fields["id"],
        task_id=fields["task_id"],
        sequence=fields["sequence"],
        type=fields["type"],
        version=fields["version"],
        occurred_at=fields["occurred_at"],
        causation_id=fields["causation_id"],
        correlation_id=fields["correlation_id"],
        actor=fields["actor"],
        data=fields["data"],
        prev_hash=fields["prev_hash"],
        hash=hash,
        body=body,
        position=position,
    )


__all__ = ["GENESIS_HASH", "Envelope", "body_fields", "from_document", "from_stored", "seal"]
