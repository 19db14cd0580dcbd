"""The audit on every core finds exactly what the audit in one process finds."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from audit.log_audit import AuditReport, Violation, audit_log
from audit.shards import ShardedLog, audit_in_shards
from bench.workload import lifecycle
from events.sqlite_log import SqliteEventLog
from processors.command_core import CommandRequest
from processors.commands import EmbeddedCommands
from taskledger.inspect_log import SHARDED_AUDIT_FROM

TASKLEDGER = [sys.executable, "-m", "taskledger.cli"]
_HEAD_KINDS = {"head_mismatch", "truncated_stream", "unrecorded_events"}


async def write_lifecycles(path: Path, count: int) -> list[str]:
    log = SqliteEventLog(path)
    commands = EmbeddedCommands(log)
    flows = [lifecycle(index) for index in range(count)]
    for step in range(len(flows[0].commands)):
        requests = [CommandRequest(flow.task_id, flow.commands[step], "test") for flow in flows]
        for result in await commands.execute_many(requests):
            assert not isinstance(result, Exception), result
    await log.close()
    return [flow.task_id for flow in flows]


def tamper(path: Path, ids: list[str]) -> None:
    """One of each kind of damage, spread over tasks of every shard."""
    with sqlite3.connect(path) as db:
        body = db.execute(
            "SELECT body FROM events WHERE task_id = ? AND sequence = 3", (ids[1],)
        ).fetchone()[0]
        db.execute(
            "UPDATE events SET body = ? WHERE task_id = ? AND sequence = 3",
            (body.replace(b"says little", b"says a lot!"), ids[1]),
        )
        db.execute("DELETE FROM events WHERE task_id = ? AND sequence = 4", (ids[2],))
        db.execute("DELETE FROM events WHERE task_id = ? AND sequence = 8", (ids[3],))
        # Two events of one task swap places.
        first, second = db.execute(
            "SELECT position, body, hash FROM events WHERE task_id = ? AND sequence IN (5, 6) "
            "ORDER BY sequence",
            (ids[4],),
        ).fetchall()
        db.execute("UPDATE events SET position = -1 WHERE position = ?", (first[0],))
        db.execute("UPDATE events SET position = ? WHERE position = ?", (first[0], second[0]))
        db.execute("UPDATE events SET position = ? WHERE position = -1", (second[0],))
        db.execute("UPDATE streams SET head_hash = ? WHERE task_id = ?", ("0" * 64, ids[5]))
        db.execute(
            "UPDATE events SET body = ? WHERE task_id = ? AND sequence = 2",
            (b"{not json", ids[6]),
        )
        stored = db.execute(
            "SELECT body FROM events WHERE task_id = ? AND sequence = 7", (ids[7],)
        ).fetchone()[0]
        db.execute(
            "UPDATE events SET body = ? WHERE task_id = ? AND sequence = 7",
            (orjson.dumps({**orjson.loads(stored), "type": "Nonsense"}), ids[7]),
        )
        db.execute("DELETE FROM streams WHERE task_id = ?", (ids[9],))
        # A row filed under an empty task id, whose body names another task.
        db.execute(
            "INSERT INTO events (task_id, sequence, type, body, hash) "
            "SELECT ?, sequence, type, body, hash FROM events WHERE task_id = ? AND sequence = 1",
            ("", ids[8]),
        )


def open_log(path: Path) -> SqliteEventLog:
    return SqliteEventLog(path)


async def audits(path: Path, workers: int) -> tuple[AuditReport, AuditReport]:
    log = SqliteEventLog(path)
    try:
        alone = await audit_log(log)
    finally:
        await log.close()

    def opener() -> ShardedLog:
        return open_log(path)

    sharded = await audit_in_shards(opener, workers)
    return alone, sharded


def in_log_order(violations: list[Violation]) -> list[Violation]:
    return [violation for violation in violations if violation.kind not in _HEAD_KINDS]


@pytest.mark.parametrize("workers", [2, 3, 5])
async def test_the_shards_find_the_same_violations_in_the_same_order(
    tmp_path: Path, workers: int
) -> None:
    path = tmp_path / "events.db"
    ids = await write_lifecycles(path, 60)
    tamper(path, ids)
    alone, sharded = await audits(path, workers)
    assert not alone.clean
    assert {v.kind for v in alone.violations} >= {
        "hash_mismatch",
        "sequence_gap",
        "truncated_stream",
        "head_mismatch",
        "broken_link",
        "malformed_event",
        "illegal_transition",
        "unknown_event",
        "unrecorded_events",
    }
    assert (sharded.events, sharded.tasks) == (alone.events, alone.tasks)
    assert in_log_order(sharded.violations) == in_log_order(alone.violations)
    assert Counter(sharded.violations) == Counter(alone.violations)


async def test_a_clean_log_is_clean_in_shards(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await write_lifecycles(path, 40)
    alone, sharded = await audits(path, 2)
    assert alone.clean and sharded.clean
    assert (sharded.events, sharded.tasks) == (320, 40)


async def test_every_stream_is_in_exactly_one_shard(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    try:
        ids = ["", "a", "é", "task-1", "task-2", "ζ", "00000000-0000-4000-8000-00000000000f"]
        with sqlite3.connect(log.path) as db:
            db.executemany(
                "INSERT INTO events (task_id, sequence, type, body, hash) "
                "VALUES (?, 1, 'T', x'', '')",
                [(task_id,) for task_id in ids],
            )
        for count in (1, 2, 3, 7):
            seen: list[str] = []
            for index in range(count):
                async for rows in log.raw_batches(2, (index, count)):
                    seen += [row[1] for row in rows]
            assert sorted(seen) == sorted(ids), count
        with pytest.raises(ValueError):
            await log.stream_heads((2, 2))
    finally:
        await log.close()


async def test_a_worker_that_fails_fails_the_audit(tmp_path: Path) -> None:
    def broken() -> ShardedLog:
        raise OSError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        await audit_in_shards(broken, 2)


def test_the_command_line_audits_a_large_log_in_shards(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    ids = asyncio.run(write_lifecycles(path, SHARDED_AUDIT_FROM // 8 + 1))
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM events WHERE task_id = ? AND sequence = 5", (ids[-1],))
    result = subprocess.run(
        [*TASKLEDGER, "audit", "--data-dir", str(tmp_path), "--json", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == 8 * len(ids) - 1
    found = {(v["task_id"], v["sequence"], v["kind"]) for v in report["violations"]}
    assert (ids[-1], 6, "sequence_gap") in found
    assert {task_id for task_id, _, _ in found} == {ids[-1]}
