"""`taskledger bench http`: drives the running system over HTTP from a separate process.

Three phases against a fresh system (the embedded proxy as an edge process and
a processors process, with fast miners and the reference validator over HTTP):
latency at a fixed offered rate (open loop), full lifecycles as fast as they go, then intake alone.
All traffic is on loopback and every phase is bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from miners.http1 import Http1Client
from taskledger.dev import free_port

TERMINAL = {"APPROVED", "FAILED", "CANCELLED"}


def percentile(values: Iterable[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Load:
    """The clients' requests. With ``lean``, over the lean HTTP/1.1 client the processors
    use for miners (miners/http1.py) rather than aiohttp's: the load generator shares the
    2 cores with the system under test, and takes half the CPU per request that way."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, key: str, *, lean: bool = False
    ) -> None:
        self.session = session
        self.api = url.rstrip("/") + "/api/v1"
        self.headers = {"Authorization": f"Bearer {key}"}
        # Kept alive for less than the edge's idle timeout (TASKLEDGER_IDLE_TIMEOUT, 5 s):
        # a connection reused just as the edge closes it fails mid-answer.
        self._lean = Http1Client(
            limit=256, limit_per_peer=256, max_response_bytes=1 << 24, keepalive_seconds=4.0
        )
        self._use_lean = lean and Http1Client.handles(URL(self.api))

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"{self.api}{path}"
        if self._use_lean:
            headers = dict(self.headers)
            raw = b""
            if body is not None:
                raw = orjson.dumps(body)
                headers["Content-Type"] = "application/json"
            status, answer = await self._lean.request(method, URL(url), headers, raw)
            return status, orjson.loads(answer) if answer else None
        async with self.session.request(method, url, json=body, headers=self.headers) as reply:
            return reply.status, await reply.json()

    async def submit(self, index: int) -> str | None:
        body = {"text": f"Document {index} talks about miners. Validators score the miners."}
        status, document = await self._call("POST", "/summarization", body)
        return str(document["task_id"]) if status == 202 else None

    async def status(self, task_id: str) -> str:
        _, document = await self._call("GET", f"/task/{task_id}/status")
        return str(document.get("status"))

    async def events(self, task_id: str) -> list[dict[str, Any]]:
        _, document = await self._call("GET", f"/task/{task_id}/events")
        return list(document["events"])

    async def close(self) -> None:
        await self._lean.close()

    async def wait_terminal(self, task_ids: list[str], timeout: float) -> float:
        """Poll until every task is terminal; returns when the last one was seen so.

        Tasks finish roughly in the order they were sent, so each round asks about
        the oldest unfinished ones only, a few more than were found finished in the
        round before: polling tasks still far from done would take from the same
        two cores as the system under test (several status requests per task).
        """
        remaining = list(dict.fromkeys(task_ids))
        deadline = time.monotonic() + timeout
        window = 1

        async def terminal(task_id: str) -> bool:
            return await self.status(task_id) in TERMINAL

        while remaining and time.monotonic() < deadline:
            head = remaining[:window]
            finished = await asyncio.gather(*(terminal(task_id) for task_id in head))
            remaining = [t for t, done in zip(head, finished, strict=True) if not done] + remaining[
                window:
            ]
            if all(finished):
                window = min(256, 2 * window)
                continue
            window = sum(finished) + 8
            await asyncio.sleep(0.05)
        if remaining:
            raise TimeoutError(f"{len(remaining)} tasks not terminal after {timeout}s")
        return time.monotonic()


async def offer(load: Load, rate: float, seconds: float, sent: dict[str, float]) -> None:
    """Open loop at ``rate`` until every task is terminal; ``sent`` collects each accepted
    task's send time."""
    started = time.monotonic()

    async def one(index: int) -> None:
        at = time.time()
        task_id = await load.submit(index)
        if task_id is not None:
            sent[task_id] = at

    pending = []
    for index in range(int(rate * seconds)):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one(index)))
    await asyncio.gather(*pending)
    await load.wait_terminal(list(sent), timeout=120)


async def latency_phase(
    load: Load, rate: float, seconds: float, sent: dict[str, float] | None = None
) -> dict[str, Any]:
    """:func:`offer`, then each task's times from its events."""
    sent = {} if sent is None else sent
    wall_started = time.time()
    await offer(load, rate, seconds, sent)
    to_distributed, to_done = [], []
    semaphore = asyncio.Semaphore(32)

    async def measure(task_id: str) -> None:
        async with semaphore:
            history = await load.events(task_id)
        times = {
            e["type"]: datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
            for e in history
        }
        if "TaskDistributed" in times:
            to_distributed.append((times["TaskDistributed"].timestamp() - sent[task_id]) * 1000)
        if "TaskCompleted" in times:
            to_done.append((times["TaskCompleted"].timestamp() - sent[task_id]) * 1000)

    await asyncio.gather(*(measure(task_id) for task_id in sent))
    return {
        "offered_per_second": rate,
        "achieved_per_second": len(sent) / max(1e-9, time.time() - wall_started),
        "tasks": len(sent),
        "to_distributed_p50_ms": percentile(to_distributed, 0.5),
        "to_distributed_p99_ms": percentile(to_distributed, 0.99),
        "to_done_p50_ms": percentile(to_done, 0.5),
        "to_done_p99_ms": percentile(to_done, 0.99),
    }


async def lifecycle_phase(load: Load, tasks: int, concurrency: int = 64) -> dict[str, Any]:
    ids: list[str] = []
    counter = iter(range(tasks))
    started = time.monotonic()

    async def worker() -> None:
        for index in counter:
            task_id = await load.submit(index)
            if task_id is not None:
                ids.append(task_id)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    finished = await load.wait_terminal(ids, timeout=300)
    elapsed = finished - started
    return {"lifecycles": len(ids), "seconds": elapsed, "lifecycles_per_second": len(ids) / elapsed}


async def intake_phase(load: Load, seconds: float, concurrency: int = 64) -> dict[str, Any]:
    accepted = 0
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal accepted
        while time.monotonic() < stop:
            if await load.submit(next(counter)) is not None:
                accepted += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {"accepted": accepted, "seconds": elapsed, "intakes_per_second": accepted / elapsed}


def _start(
    data_dir: Path, port: int, role: str, event_log: str = "sqlite", *extra: str
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    command = [sys.executable, "-m", "bench.http_server", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--role", role, "--event-log", event_log, *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError(f"the benchmark's {role} process did not start")
    ready: dict[str, Any] = json.loads(line)
    return process, ready


def start_servers(
    data_dir: Path, event_log: str = "sqlite", *, peers_apart: bool = False, processors: int = 1
) -> tuple[list[subprocess.Popen[str]], str, str]:
    """The edge and the processors as two processes on one data directory.

    On Kafka the edge sends its commands to the processors' command processor through
    the broker; on SQLite both append to the log file. With ``peers_apart`` the fast
    miners and the reference validator run in a third process, as on machines of their
    own, and the processors read the miners from the file it writes (as
    ``TASKLEDGER_MINERS_FILE``); otherwise they run inside the processors process.
    ``processors`` > 1 starts that many processors processes (Kafka; with ``peers_apart``,
    so that one set of miners and one validator serve them all). The processes come in the
    order peers (if apart), processors, edge.
    """
    assert processors == 1 or peers_apart, "several processors processes share apart peers"
    port = free_port("127.0.0.1")
    started: list[subprocess.Popen[str]] = []
    extra: tuple[str, ...] = ()
    if peers_apart:
        data_dir.mkdir(parents=True, exist_ok=True)
        miners_file = str(data_dir / "bench-miners.json")
        peers, _ = _start(data_dir, port, "peers", event_log, "--miners-file", miners_file)
        started.append(peers)
        extra = ("--miners-file", miners_file)
    for _ in range(processors):
        started.append(_start(data_dir, port, "processors", event_log, *extra)[0])
    edge, ready = _start(data_dir, port, "edge", event_log)
    # Terminated in this order: the validator (with the peers or the processors) first, so
    # that it does not go on asking an edge that has gone.
    return [*started, edge], str(ready["url"]), str(ready["key"])


async def drive(
    url: str, key: str, rate: float, rate_seconds: float, tasks: int, intake_seconds: float
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        load = Load(session, url, key, lean=True)
        try:
            return {
                "latency": await latency_phase(load, rate, rate_seconds),
                "lifecycles": await lifecycle_phase(load, tasks),
                "intake": await intake_phase(load, intake_seconds),
            }
        finally:
            await load.close()


def stop(processes: list[subprocess.Popen[str]]) -> None:
    """One after the other, in the order given."""
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_http_bench(
    rate: float = 200.0,
    rate_seconds: float = 10.0,
    tasks: int = 2000,
    intake_seconds: float = 5.0,
    *,
    peers_apart: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="taskledger-http-bench-") as directory:
        processes, url, key = start_servers(Path(directory), peers_apart=peers_apart)
        try:
            return asyncio.run(drive(url, key, rate, rate_seconds, tasks, intake_seconds))
        finally:
            stop(processes)
