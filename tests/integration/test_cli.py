"""The command line as a user runs it: a real data directory, real processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.lifecycle_log import write_lifecycles


def taskledger(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskledger.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    ids = asyncio.run(write_lifecycles(tmp_path, 5))
    return tmp_path, ids


def test_audit_of_a_clean_log_exits_zero(data_dir: tuple[Path, list[str]]) -> None:
    directory, _ = data_dir
    result = taskledger("audit", "--data-dir", str(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audited 40 events in 5 tasks" in result.stdout
    assert "clean" in result.stdout


def test_audit_names_the_task_and_sequence_of_an_edited_event(
    data_dir: tuple[Path, list[str]],
) -> None:
    directory, ids = data_dir
    with sqlite3.connect(directory / "events.db") as db:
        body = db.execute(
            "SELECT body FROM events WHERE task_id = ? AND sequence = 3", (ids[2],)
        ).fetchone()[0]
        db.execute(
            "UPDATE events SET body = ? WHERE task_id = ? AND sequence = 3",
            (body.replace(b"says little", b"says a lot!"), ids[2]),
        )
    result = taskledger("audit", "--data-dir", str(directory), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["clean"]
    assert {(v["task_id"], v["sequence"], v["kind"]) for v in report["violations"]} == {
        (ids[2], 3, "hash_mismatch")
    }


def test_audit_notices_a_deleted_last_event(data_dir: tuple[Path, list[str]]) -> None:
    directory, ids = data_dir
    with sqlite3.connect(directory / "events.db") as db:
        db.execute("DELETE FROM events WHERE task_id = ? AND sequence = 8", (ids[4],))
    result = taskledger("audit", "--data-dir", str(directory))
    assert result.returncode == 1
    assert f"task {ids[4]} sequence 8: truncated_stream" in result.stdout


def test_events_prints_a_history_and_replay_rebuilds(data_dir: tuple[Path, list[str]]) -> None:
    directory, ids = data_dir
    history = taskledger("events", ids[0], "--data-dir", str(directory), "--json")
    assert history.returncode == 0, history.stderr
    documents = json.loads(history.stdout)
    assert [d["type"] for d in documents] == [
        "TaskCreated",
        "TaskDistributed",
        "MinerResponded",
        "MinerResponded",
        "MinerResponded",
        "TaskCompleted",
        "TaskEvaluated",
        "TaskApproved",
    ]
    assert documents[1]["prev_hash"] == documents[0]["hash"]
    unknown = taskledger(
        "events", "00000000-0000-4000-8000-999999999999", "--data-dir", str(directory)
    )
    assert unknown.returncode == 1
    replay = taskledger("replay", "--data-dir", str(directory))
    assert replay.returncode == 0, replay.stderr
    assert "rebuilt the read models from 40 events" in replay.stdout
    with sqlite3.connect(directory / "readmodels.db") as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status"))
    assert statuses == {"APPROVED": 5}


def test_a_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskledger.cli", "audit", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TASKLEDGER_DURABILITY": "sometimes"},
    )
    assert result.returncode == 2
    assert "TASKLEDGER_DURABILITY" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_validator_takes_its_batch_and_concurrency_from_the_command_line() -> None:
    from taskledger.cli import parser

    arguments = parser().parse_args(["validator", "--concurrency", "4", "--batch", "10"])
    assert (arguments.concurrency, arguments.batch) == (4, 10)
    defaults = parser().parse_args(["validator"])
    assert (defaults.concurrency, defaults.batch) == (16, 50)
    refused = taskledger("validator", "--concurrency", "0")
    assert refused.returncode == 2
    assert "must be at least 1" in refused.stderr


def test_bench_kafka_reports_the_run_with_the_median_p99() -> None:
    from bench.kafka import median_run
    from taskledger.cli import parser

    assert parser().parse_args(["bench", "kafka"]).repeats == 5
    runs = [{"latency": {"to_distributed_p99_ms": p99}} for p99 in (90.0, 40.0, 60.0, 70.0)]
    assert median_run(runs)["latency"]["to_distributed_p99_ms"] == 60.0
    assert median_run(runs[:3])["latency"]["to_distributed_p99_ms"] == 60.0
    refused = taskledger("bench", "kafka", "--repeats", "0")
    assert refused.returncode == 2
    assert "must be at least 1" in refused.stderr
