"""The attack of issue 15: history rewritten consistently, every hash recomputed.

Someone who can write the log file can edit a task and re-seal its whole
chain (each event's hash, each link, the stream head), or drop a task and its
head outright: the task chains then check out. Only anchors outside the data
directory can tell.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from events import GENESIS_HASH, Envelope, from_stored, parse_time, seal


def doctored(data: dict[str, Any]) -> dict[str, Any] | None:
    """The scores and result of a task, rewritten; None for events that have neither."""
    if "scores" in data:
        return {**data, "scores": dict.fromkeys(data["scores"], 0.0) | {"5Mallory": 1.0}}
    if "result" in data:
        return {**data, "result": {"summary": "Whatever Mallory wants."}}
    return None


def reseal(stream: Sequence[Envelope]) -> list[Envelope]:
    """The stream with its scores and result doctored and every hash recomputed."""
    resealed: list[Envelope] = []
    previous = GENESIS_HASH
    changed = False
    for envelope in stream:
        data = doctored(envelope.data)
        changed |= data is not None
        sealed = seal(
            event_id=envelope.event_id,
            task_id=envelope.task_id,
            sequence=envelope.sequence,
            type=envelope.type,
            version=envelope.version,
            occurred_at=parse_time(envelope.occurred_at),
            actor=envelope.actor,
            data=data if data is not None else envelope.data,
            prev_hash=previous,
            causation_id=envelope.causation_id,
            correlation_id=envelope.correlation_id,
        )
        resealed.append(sealed)
        previous = sealed.hash
    assert changed, "the stream had nothing to doctor"
    return resealed


def rewrite_task(database: Path, task_id: str) -> list[int]:
    """Rewrite one task of an events.db consistently; the positions it rewrote."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT position, body, hash FROM events WHERE task_id = ? ORDER BY sequence",
            (task_id,),
        ).fetchall()
        stream = [from_stored(body, hash, position) for position, body, hash in rows]
        positions = []
        for old, new in zip(stream, reseal(stream), strict=True):
            if new.hash != old.hash:
                positions.append(old.position)
            db.execute(
                "UPDATE events SET body = ?, hash = ? WHERE position = ?",
                (new.body, new.hash, old.position),
            )
        db.execute("UPDATE streams SET head_hash = ? WHERE task_id = ?", (new.hash, task_id))
    return [p for p in positions if p is not None]


def delete_task(database: Path, task_id: str) -> list[int]:
    """Drop a task's events and its head; the positions it held."""
    with sqlite3.connect(database) as db:
        positions = [
            row[0]
            for row in db.execute(
                "SELECT position FROM events WHERE task_id = ? ORDER BY position", (task_id,)
            )
        ]
        db.execute("DELETE FROM events WHERE task_id = ?", (task_id,))
        db.execute("DELETE FROM streams WHERE task_id = ?", (task_id,))
    return positions
