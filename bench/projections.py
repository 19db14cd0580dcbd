"""`taskledger bench projections`: how fast the projector keeps a read-model store current.

The event log (SQLite) is filled first, untimed, with whole lifecycles of 8 events
through the real command path. Then the projector folds the log into a fresh
store, the way the projection runner does, and the clock runs until the last
event is in:

- batched: batches as the runner reads them (``--batch-size`` events), one
  commit each;
- unbatched: one event per batch, so one commit per event: the cost of every
  round trip, paid for every event.

Firestore runs go to Google's emulator on this machine (started here unless
``--firestore-host`` names one already running): the figures show the client's
and the protocol's costs, not the real service's latency or quotas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import machine, publish
from bench.workload import EVENTS_PER_TASK, lifecycles
from events.sqlite_log import SqliteEventLog
from processors.commands import EmbeddedCommands
from projections import Projector, ReadModelStore
from projections.sqlite_store import SqliteReadModelStore

STORE_KINDS = ("sqlite", "firestore")
BATCH_SIZE = 2000  # what the projection runner asks the log for
EMULATOR_SCRIPT = Path(
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator"
)


def run_projection_bench(
    store_kind: str,
    events: int,
    batched: bool,
    *,
    batch_size: int = BATCH_SIZE,
    firestore_host: str | None = None,
) -> dict[str, Any]:
    """Fold ``events`` events into a fresh ``store_kind`` store; the figures as a dict.

    For Firestore without ``firestore_host``, an emulator is started for this run.
    """
    if store_kind not in STORE_KINDS:
        raise ValueError(f"unknown store {store_kind!r}; one of {', '.join(STORE_KINDS)}")
    if store_kind == "firestore" and firestore_host is None:
        with firestore_emulator() as emulator:
            figures = run_projection_bench(
                store_kind, events, batched, batch_size=batch_size, firestore_host=emulator.host
            )
            figures["emulator"] = emulator.figures()
            return figures
    with tempfile.TemporaryDirectory(prefix="taskledger-bench-") as directory:
        return asyncio.run(
            _bench(
                store_kind, events, batch_size if batched else 1, Path(directory), firestore_host
            )
        )


async def _bench(
    store_kind: str, events: int, batch_size: int, directory: Path, firestore_host: str | None
) -> dict[str, Any]:
    log = SqliteEventLog(directory / "events.db", durability="normal")
    tasks = max(1, events // EVENTS_PER_TASK)
    await _fill(log, tasks)
    store = _store(store_kind, directory, firestore_host)
    try:
        projector = Projector(store)
        applied = commits = task_writes = 0
        started = time.perf_counter()
        async for batch in log.subscribe(follow=False, batch_size=batch_size):
            task_writes += len(await projector.apply(batch))
            applied += len(batch.events)
            commits += 1
        seconds = time.perf_counter() - started
        counts = await store.status_counts()
        if counts != {"APPROVED": tasks}:
            raise RuntimeError(f"the read models do not match the log: {counts}")
    finally:
        await store.close()
        await log.close()
    return {
        "store": store_kind,
        "batched": batch_size > 1,
        "batch_size": batch_size,
        "tasks": tasks,
        "events": applied,
        "commits": commits,
        "task_writes": task_writes,
        "seconds": seconds,
        "events_per_second": applied / seconds,
        "commits_per_second": commits / seconds,
    }


async def _fill(log: SqliteEventLog, tasks: int, concurrency: int = 200) -> None:
    commands = EmbeddedCommands(log)
    flows = list(lifecycles(tasks))

    async def worker(first: int) -> None:
        for flow in flows[first::concurrency]:
            for command in flow.commands:
                await commands.execute(flow.task_id, command, actor="bench")

    await asyncio.gather(*(worker(first) for first in range(min(concurrency, tasks))))


def _store(kind: str, directory: Path, firestore_host: str | None) -> ReadModelStore:
    if kind == "sqlite":
        return SqliteReadModelStore(directory / "readmodels.db")
    if firestore_host is None:
        raise ValueError("the Firestore bench needs an emulator's host:port")
    # Google's client takes a good part of a second to import: only when measuring it.
    from google.cloud import firestore

    from projections.firestore_store import FirestoreReadModelStore

    # The client reaches an emulator only through this variable, read in its
    # constructor; a project of its own keeps every run apart.
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
    try:
        client = firestore.AsyncClient(project=f"bench-{uuid.uuid4().hex[:12]}")
    finally:
        if previous is None:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
    return FirestoreReadModelStore(client)


# -- the emulator ------------------------------------------------------------------


@dataclass
class _Emulator:
    host: str
    process: subprocess.Popen[bytes]
    start_seconds: float

    def figures(self) -> dict[str, float]:
        return {"start_seconds": self.start_seconds, "rss_mib": _group_rss_kib(self.process) / 1024}


@contextlib.contextmanager
def firestore_emulator(timeout: float = 60.0) -> Iterator[_Emulator]:
    """Google's Firestore emulator on a free loopback port, stopped on exit."""
    if not EMULATOR_SCRIPT.exists():
        raise RuntimeError(
            f"the Firestore emulator is missing ({EMULATOR_SCRIPT}); it comes with the "
            "Debian package google-cloud-cli-firestore-emulator"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"127.0.0.1:{port}"
    started = time.monotonic()
    process = subprocess.Popen(
        [str(EMULATOR_SCRIPT), "start", "--host=127.0.0.1", f"--port={port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the script starts java: stop them together
    )
    try:
        while not _answers(host):
            if process.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"the Firestore emulator did not start on {host}")
            time.sleep(0.1)
        yield _Emulator(host, process, time.monotonic() - started)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=1) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError):
        return False


def _group_rss_kib(process: subprocess.Popen[bytes]) -> int:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == process.pid:
                total += int((stat.parent / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total * os.sysconf("SC_PAGE_SIZE") // 1024


# -- the command line --------------------------------------------------------------


def projections(arguments: argparse.Namespace) -> int:
    kinds = STORE_KINDS if arguments.store == "both" else (arguments.store,)
    figures: dict[str, Any] = {"machine": machine(), "runs": []}
    with contextlib.ExitStack() as stack:
        host = arguments.firestore_host
        emulator: _Emulator | None = None
        if "firestore" in kinds and host is None:
            emulator = stack.enter_context(firestore_emulator())
            host = emulator.host
        for kind in kinds:
            for batched, events in ((True, arguments.events), (False, arguments.unbatched_events)):
                figures["runs"].append(
                    run_projection_bench(
                        kind,
                        events,
                        batched,
                        batch_size=arguments.batch_size,
                        firestore_host=host,
                    )
                )
        if emulator is not None:
            figures["emulator"] = emulator.figures()
    return publish(
        "projections",
        figures,
        _text(figures),
        _markdown(figures, arguments),
        as_json=arguments.json,
        keep=not arguments.no_record,
    )


def _mode(run: dict[str, Any]) -> str:
    return f"batches of {run['batch_size']:,}" if run["batched"] else "one event per commit"


def _text(figures: dict[str, Any]) -> str:
    lines = [f"machine: {figures['machine']}"]
    for run in figures["runs"]:
        lines.append(
            f"{run['store']}, {_mode(run)}: {run['events']:,} events in {run['commits']:,} "
            f"commits, {run['seconds']:.2f}s = {run['events_per_second']:,.0f} events/s, "
            f"{run['commits_per_second']:,.0f} commits/s"
        )
    if "emulator" in figures:
        emulator = figures["emulator"]
        lines.append(
            f"Firestore emulator: answered after {emulator['start_seconds']:.1f}s, "
            f"{emulator['rss_mib']:.0f} MiB resident at the end"
        )
    return "\n".join(lines)


def _markdown(figures: dict[str, Any], arguments: argparse.Namespace) -> str:
    command = (
        f"taskledger bench projections --store {arguments.store} --events {arguments.events} "
        f"--unbatched-events {arguments.unbatched_events} --batch-size {arguments.batch_size}"
    )
    rows = [
        "## Projections (read-model stores)",
        "",
        f"Command: `{command}`. The projector folds a prepared SQLite log of whole "
        "lifecycles (8 events, 3 miners each) into a fresh store: in the runner's batches "
        "(one transaction per batch, with its checkpoint), and with one event per commit. "
        "Firestore means Google's emulator on this machine, not the service.",
        "",
        "| store | mode | events | commits | seconds | events/s | commits/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in figures["runs"]:
        rows.append(
            f"| {run['store']} | {_mode(run)} | {run['events']:,} | {run['commits']:,} | "
            f"{run['seconds']:.2f} | {run['events_per_second']:,.0f} | "
            f"{run['commits_per_second']:,.0f} |"
        )
    if "emulator" in figures:
        emulator = figures["emulator"]
        rows += [
            "",
            f"Firestore emulator: answering {emulator['start_seconds']:.1f}s after start, "
            f"{emulator['rss_mib']:.0f} MiB resident (script and JVM) after the runs.",
        ]
    return "\n".join(rows)


def add_projection_bench(kinds: Any) -> None:
    parser = kinds.add_parser(
        "projections", help="read-model updates/s: SQLite and the Firestore emulator"
    )
    parser.add_argument("--store", choices=(*STORE_KINDS, "both"), default="both")
    parser.add_argument("--events", type=int, default=20_000, help="events of the batched run")
    parser.add_argument(
        "--unbatched-events", type=int, default=2_000, help="events of the one-per-commit run"
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument(
        "--firestore-host", default=None, help="an emulator already running (host:port)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    parser.set_defaults(handler=projections)
