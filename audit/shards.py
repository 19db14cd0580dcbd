"""The audit of a large log on every core: one process per shard of the streams.

Every stream belongs to exactly one shard, and a stream's checks (hash, link,
sequence, transition, miners, head) never look at another stream. So each
worker process audits its shard's streams in log order with the same
:class:`~audit.log_audit.Auditor`, reads its shard's recorded heads before
and after, and the merged report holds exactly the violations one process
would find, in log order (head violations last).

Workers are forked: they start in microseconds with everything imported, open
a log of their own (never a connection inherited from the parent) and send
their report back through a pipe.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.sharedctypes import Synchronized
from typing import Protocol

from audit.log_audit import Auditor, AuditReport, Violation
from events import Shard, StreamHead

RawRow = tuple[int, str, int, bytes, str]


class ShardedLog(Protocol):
    """A log that reads one shard of its streams at a time (the SQLite log does)."""

    def raw_batches(
        self, batch_size: int, shard: Shard | None = None
    ) -> AsyncIterator[list[RawRow]]:
        """Batches of the shard's stored (position, task id, sequence, body, hash), in log order."""
        ...

    async def stream_heads(self, shard: Shard | None = None) -> list[StreamHead]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ShardReport:
    """What one worker found: its figures, and each violation with the position it was found at."""

    events: int
    tasks: int
    violations: list[tuple[float, Violation]]


_AFTER_THE_LOG = float("inf")  # where the heads' violations sort: after every event


async def audit_in_shards(
    open_log: Callable[[], ShardedLog],
    workers: int,
    *,
    progress: Callable[[int], None] | None = None,
    progress_seconds: float = 1.0,
    batch_size: int = 2_000,
) -> AuditReport:
    """Audit the log that ``open_log`` opens with ``workers`` forked processes."""
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    audited = [context.Value("q", 0, lock=False) for _ in range(workers)]
    receivers: list[Connection] = []
    processes = []
    for index in range(workers):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_work,
            args=(open_log, (index, workers), batch_size, audited[index], sender),
            name=f"taskledger-audit-{index}",
            daemon=True,
        )
        process.start()
        sender.close()
        receivers.append(receiver)
        processes.append(process)

    def report_progress() -> None:
        if progress is not None:
            progress(sum(counter.value for counter in audited))

    try:
        shards = await asyncio.to_thread(_collect, receivers, report_progress, progress_seconds)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for receiver in receivers:
            receiver.close()
    report = _merge(shards)
    report.seconds = time.perf_counter() - started
    return report


def _collect(
    receivers: list[Connection], report_progress: Callable[[], None], every: float
) -> list[ShardReport]:
    results: dict[int, ShardReport] = {}
    pending = {receiver: index for index, receiver in enumerate(receivers)}
    while pending:
        for ready in wait(list(pending), timeout=every):
            assert isinstance(ready, Connection)
            index = pending.pop(ready)
            try:
                outcome, result = ready.recv()
            except EOFError:
                raise RuntimeError(f"audit worker {index} died without a report") from None
            if outcome != "ok":
                raise RuntimeError(f"audit worker {index} failed: {result}")
            results[index] = result
        report_progress()
    return [results[index] for index in sorted(results)]


def _merge(shards: list[ShardReport]) -> AuditReport:
    located = [found for shard in shards for found in shard.violations]
    located.sort(key=lambda found: found[0])  # stable: a row's violations keep their order
    return AuditReport(
        events=sum(shard.events for shard in shards),
        tasks=sum(shard.tasks for shard in shards),
        violations=[violation for _, violation in located],
    )


def _work(
    open_log: Callable[[], ShardedLog],
    shard: Shard,
    batch_size: int,
    audited: Synchronized[int],
    sender: Connection,
) -> None:
    """A worker's whole life: audit one shard, send the report (or the failure), exit."""
    try:
        report = asyncio.run(_audit_shard(open_log, shard, batch_size, audited))
        sender.send(("ok", report))
    except BaseException as error:  # the parent must hear of any failure
        sender.send(("error", f"{type(error).__name__}: {error}"))
        sys.exit(1)
    finally:
        sender.close()


async def _audit_shard(
    open_log: Callable[[], ShardedLog], shard: Shard, batch_size: int, audited: Synchronized[int]
) -> ShardReport:
    log = open_log()
    try:
        auditor = Auditor()
        violations = auditor.report.violations
        located: list[tuple[float, Violation]] = []
        heads = await log.stream_heads(shard)
        async for rows in log.raw_batches(batch_size, shard):
            check = auditor.check_raw
            for position, task_id, sequence, body, hash in rows:
                found = len(violations)
                check(task_id, sequence, body, hash)
                if len(violations) != found:
                    located.extend((position, violation) for violation in violations[found:])
            audited.value = auditor.report.events
        found = len(violations)
        report = auditor.finish(heads, await log.stream_heads(shard))
        located.extend((_AFTER_THE_LOG, violation) for violation in violations[found:])
        return ShardReport(report.events, report.tasks, located)
    finally:
        await log.close()
