"""The storage floor: the bare storage work of ``bench engine``, in one plain Python loop.

What the engine's figure is compared with (issue 17): one process, one core, no domain, no
asyncio, the same storage work as the engine. Lifecycles go through in waves of 1,000, as
the engine's are in flight; each step of a wave (its 1,000 creations, then its 1,000
distributions, ...) is one ``synchronous=FULL`` transaction on a log with the very schema and
indexes of ``events/sqlite_log.py``, as each of the engine's steps is one group commit: the
streams' stored heads are read, each event's full envelope is encoded as canonical JSON
(sorted keys) and linked into its task's SHA-256 chain, the events are inserted and the
heads moved. The step's events are then read back from the log and folded into one row
per task in a read-model database with the very schema, indexes, page size and durability
of ``projections/sqlite_store.py`` (the row's columns and a JSON document of the task),
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

# The very schemas and indexes of the log and of the read models, and how each is opened.
from events.sqlite_log import _SCHEMA as LOG_SCHEMA
from projections.sqlite_store import _PAGE_SIZE as READ_MODEL_PAGE_SIZE
from projections.sqlite_store import _SCHEMA as READ_MODEL_SCHEMA
from projections.sqlite_store import _UPSERT_TASK as UPSERT_TASK

BATCH = 1_000
CONSUMER = "floor"

# The status each event type leaves a task in (None: unchanged), as in the engine's workload.
_STATUS = {
    "TaskCreated": "PENDING",
    "TaskDistributed": "DISTRIBUTED",
    "MinerResponded": None,
    "TaskCompleted": "DONE",
    "TaskEvaluated": None,
    "TaskApproved": "APPROVED",
}
_PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "critical": 3}


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


def _payloads(index: int, deadline: str) -> list[tuple[str, dict[str, Any]]]:
    """The 8 events of one lifecycle, with the data the engine's workload stores."""
    miners = [f"5Miner{(index + offset) % 12:02d}" for offset in range(3)]
    text = f"Summarize document {index}. It has a few sentences. They say little."
    result = {"summary": f"Document {index} says little."}
    scores = {m: 0.5 + 0.1 * r for r, m in enumerate(miners)}
    total = sum(scores.values())
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
                "idempotency_key": None,
                "blobs": [],
            },
        ),
        ("TaskDistributed", {"assignments": [{"hotkey": m, "deadline": deadline} for m in miners]}),
    ]
    events += [
        ("MinerResponded", {"hotkey": m, "result": result, "latency_ms": 10.0 + rank})
        for rank, m in enumerate(miners)
    ]
    events += [
        ("TaskCompleted", {"responded": miners}),
        (
            "TaskEvaluated",
            {
                "validator": "5Validator",
                "scores": scores,
                "rewards": {m: score / total for m, score in scores.items()},
            },
        ),
        (
            "TaskApproved",
            {"miner_hotkey": miners[-1], "result": result, "score": scores[miners[-1]]},
        ),
    ]
    return events


def _task_id(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


def _append_step(log: sqlite3.Connection, step: int, wave: list[tuple[str, list[Any]]]) -> None:
    """Chain and append event ``step`` of each lifecycle of the wave in one durable commit."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows: list[tuple[str, int, str, bytes, str]] = []
    heads: list[tuple[str, int, str]] = []
    log.execute("BEGIN IMMEDIATE")
    marks = ",".join("?" * len(wave))
    stored = {
        task_id: (sequence, head)
        for task_id, sequence, head in log.execute(
            f"SELECT task_id, sequence, head_hash FROM streams WHERE task_id IN ({marks})",
            [task_id for task_id, _ in wave],
        )
    }
    for task_id, payloads in wave:
        sequence, previous = stored.get(task_id, (0, GENESIS_HASH))
        if sequence != step:
            raise RuntimeError(f"{task_id} is at {sequence}, expected {step}")
        type_, data = payloads[step]
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
                "correlation_id": task_id,
                "actor": "bench",
                "data": data,
                "prev_hash": previous,
            },
            option=orjson.OPT_SORT_KEYS,
        )
        hash_ = hashlib.sha256(body).hexdigest()
        rows.append((task_id, sequence, type_, body, hash_))
        heads.append((task_id, sequence, hash_))
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


def _fold(document: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any]:
    """A task's read-model document after ``event``: its status and what the events said."""
    type_, data = event["type"], event["data"]
    if document is None:
        document = {"task_id": event["task_id"], "created_at": event["occurred_at"], **data}
    elif type_ == "MinerResponded":
        document.setdefault("responses", []).append(data)
    else:
        document[type_] = data
    document["status"] = _STATUS.get(type_) or document.get("status", "PENDING")
    document["version"] = event["sequence"]
    document["updated_at"] = event["occurred_at"]
    return document


def _task_row(document: dict[str, Any]) -> tuple[Any, ...]:
    waiting = document["status"] in ("PENDING", "DISTRIBUTED")
    return (
        document["task_id"],
        document["client"],
        document["status"],
        _PRIORITY_RANK[document["priority"]],
        document["created_at"],
        document["updated_at"],
        document["deadline"] if waiting else None,
        0,
        orjson.dumps(document),
        document["version"],
    )


def _fold_new(
    log: sqlite3.Connection,
    models: sqlite3.Connection,
    documents: dict[str, dict[str, Any]],
    after: int,
) -> int:
    """Fold the events after position ``after`` into task rows; returns the new checkpoint."""
    changed: dict[str, dict[str, Any]] = {}
    last = after
    for position, task_id, body in log.execute(
        "SELECT position, task_id, body FROM events WHERE position > ? ORDER BY position",
        (after,),
    ):
        changed[task_id] = documents[task_id] = _fold(documents.get(task_id), orjson.loads(body))
        last = position
    models.execute("BEGIN IMMEDIATE")
    models.executemany(UPSERT_TASK, [_task_row(document) for document in changed.values()])
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
    # As the read-model store opens its database: its page size, NORMAL durability.
    models = open_wal(
        directory / "floor-readmodels.db", synchronous="normal", page_size=READ_MODEL_PAGE_SIZE
    )
    try:
        log.executescript(LOG_SCHEMA)
        models.executescript(READ_MODEL_SCHEMA)
        append_seconds = 0.0
        checkpoint = 0
        documents: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        for first in range(0, tasks, batch):
            deadline = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            wave = [
                (_task_id(index), _payloads(index, deadline))
                for index in range(first, min(first + batch, tasks))
            ]
            for step in range(len(wave[0][1])):
                appending = time.perf_counter()
                _append_step(log, step, wave)
                append_seconds += time.perf_counter() - appending
                checkpoint = _fold_new(log, models, documents, checkpoint)
            # Finished tasks are not kept: the engine's projector keeps a bounded cache too.
            for task_id, _ in wave:
                documents.pop(task_id, None)
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
