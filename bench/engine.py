"""`taskledger bench engine`: append and project whole lifecycles on the embedded log.

Each lifecycle goes through the real command path (decide, seal with the hash
chain, append with optimistic concurrency and group commit) while the
projection runner folds the log into the SQLite read models. Time stops when
the projection has caught up with the last event.
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.workload import EVENTS_PER_TASK, lifecycle
from events.sqlite_log import SqliteEventLog
from processors.commands import CommandHandler
from processors.projection_runner import ProjectionRunner, StatusBroadcaster
from projections import Projector
from projections.audit import audit_log
from projections.sqlite_store import SqliteReadModelStore


@dataclass(frozen=True)
class EngineFigures:
    tasks: int
    events: int
    seconds: float
    events_per_second: float
    audit_seconds: float
    audit_events_per_second: float
    peak_rss_mib: float


async def _run_lifecycles(handler: CommandHandler, first: int, count: int) -> None:
    for index in range(first, first + count):
        flow = lifecycle(index)
        for command in flow.commands:
            await handler.execute(flow.task_id, command, actor="bench")


async def run_engine(tasks: int, directory: Path, concurrency: int = 400) -> EngineFigures:
    log = SqliteEventLog(directory / "events.db")
    store = SqliteReadModelStore(directory / "readmodels.db")
    handler = CommandHandler(log, cache_size=concurrency * 4)
    runner = ProjectionRunner(log, Projector(store), StatusBroadcaster())
    started = time.perf_counter()
    projecting = asyncio.create_task(runner.run())
    per_worker, extra = divmod(tasks, concurrency)
    workers = []
    first = 0
    for worker in range(concurrency):
        count = per_worker + (1 if worker < extra else 0)
        workers.append(_run_lifecycles(handler, first, count))
        first += count
    await asyncio.gather(*workers)
    head = await log.head_position()
    while runner.position < head:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    projecting.cancel()
    events = await log.count()
    report = await audit_log(log)
    await log.close()
    await store.close()
    if not report.clean:
        raise RuntimeError(f"benchmark log does not audit clean: {report.violations[:3]}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return EngineFigures(
        tasks=tasks,
        events=events,
        seconds=elapsed,
        events_per_second=events / elapsed,
        audit_seconds=report.seconds,
        audit_events_per_second=report.events_per_second,
        peak_rss_mib=peak,
    )


def engine_in_tempdir(tasks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="taskledger-bench-") as directory:
        figures = asyncio.run(run_engine(tasks, Path(directory)))
    return asdict(figures)


def tasks_for(events: int) -> int:
    return max(1, events // EVENTS_PER_TASK)
