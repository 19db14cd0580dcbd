"""Checkpoint order, shared by every read-model store."""

from __future__ import annotations

import orjson


def checkpoint_advances(new: str, stored: str | None) -> bool:
    """Whether ``new`` lies after ``stored``.

    A SQLite log position is a number. A Kafka log checkpoint is a JSON object of
    partition offsets, ahead when no partition is behind and one is ahead. Any
    other checkpoint is opaque: a different one counts as progress.
    """
    if stored is None:
        return True
    if new.isdecimal() and stored.isdecimal():
        return int(new) > int(stored)
    offsets, stored_offsets = _partition_offsets(new), _partition_offsets(stored)
    if offsets is not None and stored_offsets is not None:
        behind = any(offsets.get(p, -1) < offset for p, offset in stored_offsets.items())
        return not behind and offsets != stored_offsets
    return new != stored


def _partition_offsets(checkpoint: str) -> dict[str, int] | None:
    try:
        fields = orjson.loads(checkpoint)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, dict) or not all(type(v) is int for v in fields.values()):
        return None
    return fields
