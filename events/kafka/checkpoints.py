"""Checkpoints on Kafka: where a subscriber resumes, and the log chain's signed checkpoints.

A subscriber's checkpoint is JSON ``{"<partition>": <next offset>}``. Checkpoints live in
a compacted topic keyed by consumer name rather than in consumer group offsets: a
checkpoint here is an opaque string that a projection may also keep next to its own store,
and the topic keeps them with the log, readable by any tool. The log chain's signed
checkpoints are kept in the same topic under a key of their own each (compaction keeps
them all), so they live with the log and any tool reading that topic finds them.
"""

from __future__ import annotations

from collections.abc import Mapping

from events.codec import canonical, decode
from events.log_chain import Checkpoint

_LOG_CHECKPOINT = "log-checkpoint/"


def encode_checkpoint(positions: Mapping[int, int]) -> str:
    return canonical({str(partition): offset for partition, offset in positions.items()}).decode()


def decode_checkpoint(checkpoint: str | None) -> dict[int, int]:
    if not checkpoint:
        return {}
    try:
        fields = decode(checkpoint)
        if not isinstance(fields, dict):
            raise TypeError(type(fields).__name__)
        return {int(partition): int(offset) for partition, offset in fields.items()}
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a Kafka event log checkpoint: {checkpoint!r}") from error


def log_checkpoint_record(checkpoint: Checkpoint) -> tuple[str, str]:
    """The name and value a signed log checkpoint is saved under in the checkpoints topic."""
    name = f"{_LOG_CHECKPOINT}{checkpoint.partition}/{checkpoint.position:020d}"
    return name, canonical(checkpoint.to_document()).decode()


class SavedCheckpoints:
    """The checkpoints topic as far as read or written: checkpoint by consumer name."""

    def __init__(self) -> None:
        self._saved: dict[str, str] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        """A record of the checkpoints topic, read in offset order."""
        if value is None:
            self._saved.pop(key.decode(), None)
        else:
            self._saved[key.decode()] = value.decode()

    def get(self, consumer: str) -> str | None:
        return self._saved.get(consumer)

    def put(self, consumer: str, checkpoint: str) -> None:
        self._saved[consumer] = checkpoint

    def log_checkpoints(self, after: int | None, limit: int | None) -> list[Checkpoint]:
        """The signed log checkpoints, oldest first (by position, then partition)."""
        found = [
            Checkpoint.from_document(decode(value))
            for key, value in list(self._saved.items())
            if key.startswith(_LOG_CHECKPOINT)
        ]
        found.sort(key=lambda checkpoint: (checkpoint.position, checkpoint.partition))
        found = [c for c in found if after is None or c.position > after]
        return found if limit is None else found[:limit]
