"""The figures of accountability for ``taskledger bench engine``.

- The audit with anchors verified, as a ratio to the plain audit: the same
  log, checkpointed at the default cadence, audited by ``taskledger audit
  --anchors … --proxy …`` in a fresh process (goal: at least 0.8).
- Appends with the checkpointer running beside them, as a ratio to without
  (goal: at least 0.95): the engine run twice, once with checkpointing on.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from events.sqlite_log import SqliteEventLog
from miners.identity import Identity
from processors.anchors import FileAnchors
from processors.checkpointer import Checkpointer

CHECKPOINT_EVENTS = 10_000  # the default cadence
BENCH_PROXY = Identity.from_seed(b"taskledger-bench-proxy-hotkey!!!", "bench-proxy")


def checkpointer_for(log: SqliteEventLog, anchors: Path) -> Checkpointer:
    return Checkpointer(
        log,
        log,
        BENCH_PROXY.signer,
        log_name=log.log_name,
        partition_of=lambda task_id: 0,
        resume=lambda heads: str(heads[0].position) if 0 in heads else None,
        hashes=log,
        every_events=CHECKPOINT_EVENTS,
        every_seconds=60.0,
        sinks=[FileAnchors(anchors)],
        clock=lambda: datetime.now(UTC),
    )


async def until_folded(checkpointer: Checkpointer, events: int) -> None:
    while checkpointer.folded < events:
        await asyncio.sleep(0.005)


async def anchor(directory: Path, anchors: Path) -> None:
    """Checkpoint the bench's log as the proxy would have, at the default cadence."""
    anchors.touch()  # a log shorter than the cadence has no checkpoint yet
    log = SqliteEventLog(directory / "events.db")
    checkpointer = checkpointer_for(log, anchors)
    running = asyncio.create_task(checkpointer.run())
    try:
        await until_folded(checkpointer, await log.count())
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await log.close()


def audit_with_anchors(directory: Path, anchors: Path) -> dict[str, Any]:
    """``taskledger audit --json --anchors … --proxy …`` in a fresh process."""
    command = [
        sys.executable,
        "-m",
        "taskledger.cli",
        "audit",
        "--data-dir",
        str(directory),
        "--json",
        "--anchors",
        str(anchors),
        "--proxy",
        BENCH_PROXY.ss58,
    ]
    done = subprocess.run(
        command,
        env={**os.environ, "TASKLEDGER_EVENT_LOG": "sqlite"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the anchored audit failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report


def anchored_audit_figures(directory: Path) -> dict[str, float]:
    """The plain and the anchored audit of the same log, one after the other."""
    from bench.engine import audit_as_a_user_would

    anchors = directory.parent / "anchors.jsonl"  # beside the data directory, not in it
    started = time.perf_counter()
    asyncio.run(anchor(directory, anchors))
    checkpointing_seconds = time.perf_counter() - started
    plain = audit_as_a_user_would(directory)
    plain_events_per_second = plain["events"] / plain["seconds"]
    report = audit_with_anchors(directory, anchors)
    # The whole audit, both passes (they run side by side), against the plain one's scan.
    anchored = report["events"] / report["total_seconds"]
    return {
        "audit_events_per_second_plain": plain_events_per_second,
        "audit_events_per_second_anchored": anchored,
        "audit_anchored_ratio": anchored / plain_events_per_second,
        "checkpoints": report["anchors"]["checkpoints"],
        "unanchored_events": report["anchors"]["unanchored"]["events"],
        "checkpointing_seconds": checkpointing_seconds,
    }


def accountability_figures(tasks: int) -> dict[str, float]:
    """Both ratios: the anchored audit on one engine run's log, then appends on and off."""
    from bench.engine import run_engine

    with tempfile.TemporaryDirectory(prefix="taskledger-bench-") as directory:
        data_dir = Path(directory) / "data"
        data_dir.mkdir()
        asyncio.run(run_engine(tasks, data_dir))
        figures = anchored_audit_figures(data_dir)
    return figures | checkpointing_figures(tasks)


def checkpointing_figures(tasks: int) -> dict[str, float]:
    """The engine without and with the checkpointer, each in a fresh directory."""
    from bench.engine import run_engine

    runs: dict[bool, float] = {}
    for checkpointing in (False, True):
        with tempfile.TemporaryDirectory(prefix="taskledger-bench-") as directory:
            data_dir = Path(directory) / "data"
            data_dir.mkdir()
            figures = asyncio.run(run_engine(tasks, data_dir, checkpointing=checkpointing))
            runs[checkpointing] = figures.events_per_second
    return {
        "appended_events_per_second_checkpointing_off": runs[False],
        "appended_events_per_second_checkpointing_on": runs[True],
        "checkpointing_ratio": runs[True] / runs[False],
    }
