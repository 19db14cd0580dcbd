"""The chain over the whole log, and the signed checkpoints that pin it.

Each task's chain proves a stream's order and content; it cannot prove that a
stream is all there, or that nobody rewrote one consistently. The log chain
folds every event's hash, in log order (per partition on Kafka), into one
running ``log_hash``::

    log_hash(0) = GENESIS_HASH
    log_hash(n) = sha256(log_hash(n-1) + event_hash(n))      (hex digits, ASCII)

one more SHA-256 of 128 bytes per event, so an audit reproduces it at almost
no cost. A :class:`Checkpoint` is the proxy hotkey's signature over the chain
at a log position; published outside the data directory (anchors), it is what
an auditor compares the log with.

The text that is signed is fixed by the API contract (:func:`checkpoint_message`,
:func:`receipt_message`); signing itself lives with the keys, in ``miners.proofs``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from events.codec import GENESIS_HASH

CHECKPOINT_PREFIX = "taskledger-checkpoint/1"
RECEIPT_PREFIX = "taskledger-receipt/1"

_HEX = frozenset("0123456789abcdef")


def link(log_hash: str, event_hash: str) -> str:
    """The log hash after one more event."""
    return hashlib.sha256((log_hash + event_hash).encode("ascii", "replace")).hexdigest()


@dataclass(slots=True)
class ChainHead:
    """Where one partition's chain stands: last position, events folded, running hash."""

    position: int = 0
    events: int = 0
    log_hash: str = GENESIS_HASH

    def add(self, position: int, event_hash: str) -> None:
        self.position = position
        self.events += 1
        self.log_hash = link(self.log_hash, event_hash)


def checkpoint_message(
    log: str, partition: int, position: int, events: int, log_hash: str, at: str
) -> bytes:
    return (
        f"{CHECKPOINT_PREFIX}\n{log}\n{partition}\n{position}\n{events}\n{log_hash}\n{at}"
    ).encode()


def receipt_message(task_id: str, sequence: int, event_hash: str) -> bytes:
    return f"{RECEIPT_PREFIX}\n{task_id}\n{sequence}\n{event_hash}".encode()


class MalformedProof(ValueError):
    """A checkpoint or receipt document that is not one (missing or mistyped fields)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: the log ``log`` had ``events`` events in ``partition`` up to
    ``position`` (inclusive), and their chain ends in ``log_hash``."""

    log: str
    partition: int
    position: int
    events: int
    log_hash: str
    at: str
    proxy_hotkey: str
    signature: str

    def message(self) -> bytes:
        return checkpoint_message(
            self.log, self.partition, self.position, self.events, self.log_hash, self.at
        )

    def to_document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, document: object) -> Checkpoint:
        if not isinstance(document, dict):
            raise MalformedProof(f"a checkpoint is a JSON object, not {type(document).__name__}")
        values = _typed(document, cls)
        if not _is_digest(values["log_hash"]):
            raise MalformedProof("log_hash is not a SHA-256 hex digest")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Receipt:
    """The proxy's signed word that it logged a miner's response as this event."""

    task_id: str
    sequence: int
    event_hash: str
    proxy_hotkey: str
    signature: str

    def message(self) -> bytes:
        return receipt_message(self.task_id, self.sequence, self.event_hash)

    def to_document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, document: object) -> Receipt:
        if not isinstance(document, dict):
            raise MalformedProof(f"a receipt is a JSON object, not {type(document).__name__}")
        values = _typed(document, cls)
        return cls(**values)


# The JSON types of the proofs' fields, by the annotation each field carries.
_JSON_TYPES: dict[str, type] = {"str": str, "int": int}


def _typed(document: dict[str, Any], proof: type) -> dict[str, Any]:
    """The proof's fields from ``document``, each of the type its dataclass declares."""
    values: dict[str, Any] = {}
    for field in fields(proof):
        kind = _JSON_TYPES[str(field.type)]
        value = document.get(field.name)
        # bool is an int to Python, never to the contract.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise MalformedProof(f"field {field.name!r} must be {kind.__name__}, got {value!r}")
        values[field.name] = value
    return values


def _is_digest(text: str) -> bool:
    return len(text) == 64 and _HEX.issuperset(text)


class CheckpointStore(Protocol):
    """Where a log keeps its own signed checkpoints (beside its events)."""

    async def save_log_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def log_checkpoints(
        self, after: int | None = None, limit: int | None = None
    ) -> list[Checkpoint]:
        """Checkpoints oldest first (by position, then partition); ``after`` a position."""
        ...


__all__ = [
    "CHECKPOINT_PREFIX",
    "GENESIS_HASH",
    "RECEIPT_PREFIX",
    "ChainHead",
    "Checkpoint",
    "CheckpointStore",
    "MalformedProof",
    "Receipt",
    "checkpoint_message",
    "link",
    "receipt_message",
]
