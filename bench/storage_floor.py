"""The storage floor: the bare storage work of ``bench engine``, in one plain Python loop.

What the engine's figure is compared with (issue 17): one process, one core, no domain, no
asyncio. Batches of 1,000 lifecycles of 8 events each are encoded as canonical JSON (sorted
keys), linked into each task's SHA-256 chain and appended in one ``synchronous=FULL``
transaction to a log with the same schema and indexes as ``events/sqlite_log.py``; the
batch is then read back and folded into one status row per task in a read-model database,
committed together with the consumer's checkpoint. A second loop reads the log back and
recomputes every event's hash on one core: the floor of the audit.

Written by hand on purpose: the point is to measure what the storage costs without any
library or layer on top.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from events.codec import GENESIS_HASH
from events.sqlite_connect import open_wal
from events.sqlite_log import _SCHEMA as LOG_SCHEMA  # the very schema and indexes of the log

BATCH = 1_000
CONSUMER = "floor"

_READ_MODEL_SCHEMA = """
CREATE TABLE IF NOT EXISTS task_status (
    task_id    TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer   TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL
) WITHOUT ROWID;
"""

# The status each event type leaves a task in (None: unchanged), as in the engine's workload.
_STATUS = {
    "TaskCreated": "PENDING",
    "TaskDistributed": "DISTRIBUTED",
    "MinerResponded": None,
    "TaskCompleted": "DONE",
    "TaskEvaluated": None,
    "TaskApproved": "APPROVED",
}


@dataclass(frozen=True)
class FloorFigures:
    tasks: int
    events: int
    seconds: float
    events_per_second: float
    append_seconds: float
    append_events_per_second: float
    hash_seconds: float
    hash_events_per_second: float


def _payloads(index: int, at: str, deadline: str) -> list[tuple[str, dict[str, Any]]]:
    """The 8 events of one lifecycle, with data of the engine workload's shape and size."""
    miners = [f"5Miner{(index + offset) % 12:02d}" for offset in range(3)]
    text = f"Summarize document {index}. It has a few sentences. They say little."
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "TaskCreated",
            {
                "task_type": "summarization",
                "priority": ("low", "normal", "high", "critical")[index % 4],
                "input": {"text": text, "max_words": 20},
                "client": "bench",
                "deadline": deadline,
                "miners_wanted": 3,
                "miner_timeout_seconds": 30.0,
            },
        ),
        ("TaskDistributed", {"assignments": [{"hotkey": m, "deadline": deadline} for m in miners]}),
    ]
    events += [
        (
            "MinerResponded",
            {
                "hotkey": m,
                "output": {"summary": f"Document {index} says little."},
                "latency_ms": 10.0 + rank,
            },
        )
        for rank, m in enumerate(miners)
    ]
    events += [
        ("TaskCompleted", {"responses": 3}),
        (
            "TaskEvaluated",
            {"validator": "5Validator", "scores": {m: 0.5 + 0.1 * r for r, m in enumerate(miners)}},
        ),
        ("TaskApproved", {}),
    ]
    return events


def _append_batch(log: sqlite3.Connection, first: int, count: int) -> None:
    """Encode, chain and append ``count`` whole lifecycles in one durable transaction."""
    now = datetime.now(UTC)
    at = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    deadline = (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows: list[tuple[str, int, str, bytes, str]] = []
    heads: list[tuple[str, int, str]] = []
    for index in range(first, first + count):
        task_id = f"00000000-0000-4000-8000-{index:012d}"
        previous = GENESIS_HASH
        sequence = 0
        for type_, data in _payloads(index, at, deadline):
            sequence += 1
            body = orjson.dumps(
                {
                    "id": f"{task_id[:-4]}{sequence:04d}",
                    "task_id": task_id,
                    "sequence": sequence,
                    "type": type_,
                    "version": 1,
                    "occurred_at": at,
                    "causation_id": None,
                    "correlation_id": None,
                    "actor": "bench",
                    "data": data,
                    "prev_hash": previous,
                },
                option=orjson.OPT_SORT_KEYS,
            )
            previous = hashlib.sha256(body).hexdigest()
            rows.append((task_id, sequence, type_, body, previous))
        heads.append((task_id, sequence, previous))
    log.execute("BEGIN IMMEDIATE")
    log.executemany(
        "INSERT INTO events (task_id, sequence, type, body, hash) VALUES (?, ?, ?, ?, ?)", rows
    )
    log.executemany(
        "INSERT INTO streams (task_id, sequence, head_hash) VALUES (?, ?, ?) "
        "ON CONFLICT (task_id) DO UPDATE SET "
        "sequence = excluded.sequence, head_hash = excluded.head_hash",
        heads,
    )
    log.execute("COMMIT")


def _fold_new(log: sqlite3.Connection, models: sqlite3.Connection, after: int) -> int:
    """Fold the events after position ``after`` into status rows; returns the new checkpoint."""
    rows: dict[str, tuple[str, int, str]] = {}
    last = after
    for position, task_id, type_, body in log.execute(
        "SELECT position, task_id, type, body FROM events WHERE position > ? ORDER BY position",
        (after,),
    ):
        event = orjson.loads(body)
        status = _STATUS.get(type_)
        previous = rows.get(task_id)
        if status is None:
            status = previous[0] if previous is not None else "PENDING"
        rows[task_id] = (status, event["sequence"], event["occurred_at"])
        last = position
    models.execute("BEGIN IMMEDIATE")
    models.executemany(
        "INSERT INTO task_status (task_id, status, sequence, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (task_id) DO UPDATE SET status = excluded.status, "
        "sequence = excluded.sequence, updated_at = excluded.updated_at",
        [(task_id, *row) for task_id, row in rows.items()],
    )
    models.execute(
        "INSERT INTO checkpoints (consumer, checkpoint) VALUES (?, ?) "
        "ON CONFLICT (consumer) DO UPDATE SET checkpoint = excluded.checkpoint",
        (CONSUMER, str(last)),
    )
    models.execute("COMMIT")
    return last


def recompute_hashes(log_path: Path) -> tuple[int, float]:
    """Read every event in log order and recompute its hash: (events, seconds)."""
    connection = sqlite3.connect(log_path)
    try:
        started = time.perf_counter()
        count = 0
        for body, stored in connection.execute("SELECT body, hash FROM events ORDER BY position"):
            if hashlib.sha256(body).hexdigest() != stored:
                raise RuntimeError(f"event {count + 1} does not match its hash")
            count += 1
        return count, time.perf_counter() - started
    finally:
        connection.close()


def run_floor(tasks: int, directory: Path, batch: int = BATCH) -> FloorFigures:
    log_path = directory / "floor-events.db"
    log = open_wal(log_path, synchronous="full")
    models = open_wal(directory / "floor-readmodels.db", synchronous="full")
    try:
        log.executescript(LOG_SCHEMA)
        models.executescript(_READ_MODEL_SCHEMA)
        append_seconds = 0.0
        checkpoint = 0
        started = time.perf_counter()
        for first in range(0, tasks, batch):
            appending = time.perf_counter()
            _append_batch(log, first, min(batch, tasks - first))
            append_seconds += time.perf_counter() - appending
            checkpoint = _fold_new(log, models, checkpoint)
        seconds = time.perf_counter() - started
        (events,) = log.execute("SELECT count(*) FROM events").fetchone()
    finally:
        log.close()
        models.close()
    if checkpoint != events:
        raise RuntimeError(f"the floor folded {checkpoint} of {events} events")
    hashed, hash_seconds = recompute_hashes(log_path)
    return FloorFigures(
        tasks=tasks,
        events=events,
        seconds=seconds,
        events_per_second=events / seconds,
        append_seconds=append_seconds,
        append_events_per_second=events / append_seconds,
        hash_seconds=hash_seconds,
        hash_events_per_second=hashed / hash_seconds,
    )


def floor_in_tempdir(tasks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="taskledger-floor-") as directory:
        return asdict(run_floor(tasks, Path(directory)))
