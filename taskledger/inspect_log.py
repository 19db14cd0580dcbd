"""`taskledger audit`, `replay` and `events`: reading the log from the command line."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TextIO

import orjson

from audit.log_audit import AuditReport, audit_log
from audit.shards import audit_in_shards
from events import EventLog
from events.sqlite_log import SqliteEventLog
from projections import Projector, rebuild
from taskledger.backends import open_event_log, open_read_models
from taskledger.deployments import open_log
from taskledger.proof_checks import ProofsToCheck, check_proofs
from taskledger.settings import Settings


class Progress:
    """Prints a line to stderr at most every `every` seconds."""

    def __init__(self, verb: str, stream: TextIO = sys.stderr, every: float = 1.0) -> None:
        self._verb = verb
        self._stream = stream
        self._every = every
        self._started = time.perf_counter()
        self._last = self._started

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self._last >= self._every:
            self._last = now
            rate = done / (now - self._started)
            print(f"{self._verb} {done:,} events ({rate:,.0f}/s)", file=self._stream, flush=True)


# Below this many events a second process costs more than it saves.
SHARDED_AUDIT_FROM = 20_000


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


async def audit(
    settings: Settings,
    *,
    as_json: bool,
    workers: int | None = None,
    out: TextIO = sys.stdout,
    proofs: ProofsToCheck | None = None,
) -> int:
    log, features = open_log(settings)
    started = time.perf_counter()
    try:
        if proofs is None:
            report, checked = await _audit(log, workers or available_cores()), None
        else:
            # The log chain is folded beside the audit: while the sharded audit's workers
            # run, this process would only wait for them.
            report, checked = await asyncio.gather(
                _audit(log, workers or available_cores()), check_proofs(log, features, proofs)
            )
    finally:
        await log.close()
    total_seconds = time.perf_counter() - started
    if as_json:
        out.write(
            orjson.dumps(
                {
                    "clean": report.clean and (checked is None or checked.clean),
                    "total_seconds": total_seconds,
                    **(checked.to_document() if checked is not None else {}),
                    "events": report.events,
                    "tasks": report.tasks,
                    "seconds": report.seconds,
                    "violations": [
                        {
                            "task_id": v.task_id,
                            "sequence": v.sequence,
                            "kind": v.kind,
                            "message": v.message,
                        }
                        for v in report.violations
                    ],
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
            + "\n"
        )
    else:
        for violation in report.violations[:100]:
            print(f"VIOLATION {violation}", file=out)
        if len(report.violations) > 100:
            print(f"... and {len(report.violations) - 100} more violations", file=out)
        verdict = "clean" if report.clean else f"{len(report.violations)} violation(s)"
        print(
            f"audited {report.events:,} events in {report.tasks:,} tasks in "
            f"{report.seconds:.2f}s ({report.events_per_second:,.0f} events/s): {verdict}",
            file=out,
        )
        if checked is not None:
            checked.print(out)
    return 0 if report.clean and (checked is None or checked.clean) else 1


async def _audit(log: EventLog, workers: int) -> AuditReport:
    """The embedded log is audited on every core once it is large; others in one process."""
    progress = Progress("audited")
    if (
        isinstance(log, SqliteEventLog)
        and workers > 1
        and await log.head_position() >= SHARDED_AUDIT_FROM
    ):
        path = log.path
        return await audit_in_shards(lambda: SqliteEventLog(path), workers, progress=progress)
    return await audit_log(log, progress=progress)


async def replay(settings: Settings, out: TextIO = sys.stdout) -> int:
    log = open_event_log(settings)
    store = open_read_models(settings)
    started = time.perf_counter()
    try:
        applied = await rebuild(log, Projector(store), progress=Progress("replayed"))
    finally:
        await log.close()
        await store.close()
    elapsed = time.perf_counter() - started
    print(f"rebuilt the read models from {applied:,} events in {elapsed:.2f}s", file=out)
    return 0


async def events(
    settings: Settings, task_id: str, *, as_json: bool, out: TextIO = sys.stdout
) -> int:
    log = open_event_log(settings)
    try:
        stream = await log.read_stream(task_id)
    finally:
        await log.close()
    if not stream:
        print(f"no events for task {task_id}", file=sys.stderr)
        return 1
    if as_json:
        documents = [envelope.to_document() for envelope in stream]
        out.write(orjson.dumps(documents, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    for envelope in stream:
        data = orjson.dumps(envelope.data).decode()
        if len(data) > 160:
            data = data[:157] + "..."
        print(
            f"{envelope.sequence:>4}  {envelope.occurred_at}  {envelope.type:<16} "
            f"{envelope.actor[:20]:<20} {envelope.hash[:12]}  {data}",
            file=out,
        )
    return 0
