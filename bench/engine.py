"""`taskledger bench engine`: append and project whole lifecycles on the embedded log.

Each lifecycle goes through the real command path: commands are decided,
sealed with the hash chain and appended with optimistic concurrency, many
tasks' commands per append (``EmbeddedCommands.execute_many``), while the
projection runner in a process of its own follows the log file and folds it
into the SQLite read models. Time stops when the projection's committed
checkpoint has reached the last event.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.accountability import checkpointer_for, until_folded
from bench.workload import EVENTS_PER_TASK, lifecycle
from events.sqlite_log import SqliteEventLog
from processors.command_core import CommandRequest
from processors.commands import EmbeddedCommands
from projections import CONSUMER
from projections.sqlite_store import SqliteReadModelStore
from taskledger.projection_process import ProjectionProcess


@dataclass(frozen=True)
class EngineFigures:
    tasks: int
    events: int
    seconds: float
    events_per_second: float
    audit_seconds: float
    audit_events_per_second: float
    peak_rss_mib: float
    projection_peak_rss_mib: float


async def _run_lifecycles(commands: EmbeddedCommands, first: int, count: int, wave: int) -> None:
    """Lifecycles ``wave`` at a time: each step of the wave's tasks is one batch of commands."""
    for start in range(first, first + count, wave):
        # Each lifecycle reads the clock for its own times, as separate requests would.
        flows = [lifecycle(index) for index in range(start, min(start + wave, first + count))]
        for step in range(len(flows[0].commands)):
            requests = [CommandRequest(f.task_id, f.commands[step], "bench") for f in flows]
            for result in await commands.execute_many(requests):
                if isinstance(result, Exception):
                    raise result


async def _projected(store: SqliteReadModelStore) -> int:
    checkpoint = await store.checkpoint(CONSUMER)
    return int(checkpoint) if checkpoint else 0


async def run_engine(
    tasks: int,
    directory: Path,
    concurrency: int = 4,
    wave: int = 250,
    *,
    checkpointing: bool = False,
) -> EngineFigures:
    """``concurrency`` writers, each with ``wave`` lifecycles in flight (1,000 in all).

    With ``checkpointing``, the checkpointer follows the log in the writers' process
    (as in the proxy's processors), and time stops once it has folded every event too.
    """
    log_path, store_path = directory / "events.db", directory / "readmodels.db"
    log = SqliteEventLog(log_path)
    store = SqliteReadModelStore(store_path)
    commands = EmbeddedCommands(log, cache_size=concurrency * wave * 2)
    projection = ProjectionProcess(log_path, store_path)
    projection.start()
    checkpointer = (
        checkpointer_for(log, directory.parent / "anchors.jsonl") if checkpointing else None
    )
    following = asyncio.create_task(checkpointer.run()) if checkpointer is not None else None
    try:
        started = time.perf_counter()
        per_worker, extra = divmod(tasks, concurrency)
        workers = []
        first = 0
        for worker in range(concurrency):
            count = per_worker + (1 if worker < extra else 0)
            workers.append(_run_lifecycles(commands, first, count, wave))
            first += count
        await asyncio.gather(*workers)
        head = await log.head_position()
        while await _projected(store) < head:
            if not projection.alive:
                raise RuntimeError("the projection process died")
            await asyncio.sleep(0.005)
        if checkpointer is not None:
            await until_folded(checkpointer, await log.count())
        elapsed = time.perf_counter() - started
    finally:
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        exit_code = projection.stop()
    if exit_code != 0:
        raise RuntimeError(f"the projection process exited with {exit_code}")
    # Before the audit's own process joins the children.
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    events = await log.count()
    await log.close()
    await store.close()
    report = audit_as_a_user_would(directory)
    if not report["clean"]:
        raise RuntimeError(f"benchmark log does not audit clean: {report['violations'][:3]}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return EngineFigures(
        tasks=tasks,
        events=events,
        seconds=elapsed,
        events_per_second=events / elapsed,
        audit_seconds=report["seconds"],
        audit_events_per_second=report["events"] / report["seconds"],
        peak_rss_mib=peak,
        projection_peak_rss_mib=child_peak,
    )


def audit_as_a_user_would(data_dir: Path) -> dict[str, Any]:
    """``taskledger audit --json`` on the bench's log, in a fresh process, as an auditor runs it.

    Its own figure (``seconds``) covers the scan, not the interpreter's start.
    """
    done = subprocess.run(
        [sys.executable, "-m", "taskledger.cli", "audit", "--data-dir", str(data_dir), "--json"],
        env={**os.environ, "TASKLEDGER_EVENT_LOG": "sqlite"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise RuntimeError(f"taskledger audit failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def engine_in_tempdir(tasks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="taskledger-bench-") as directory:
        figures = asyncio.run(run_engine(tasks, Path(directory)))
    return asdict(figures)


def tasks_for(events: int) -> int:
    return max(1, events // EVENTS_PER_TASK)
