"""`taskledger bench answers`: how soon a client has an answer, and what waiting costs.

Two measurements, each against a fresh embedded proxy in a process of its own
(``bench.http_server --role all``, edge and processors together):

1. **Answers first.** Three miners per task answering after 50, 200 and 800 ms, the
   order shuffled per task (so no miner is always the fast one), and the reference
   validator scoring over HTTP, all in this process (miners wait with timers, which cost
   nothing). Tasks are offered at a steady rate; per task, from its send time, the time to
   its first ``MinerResponded`` and to ``TaskApproved`` (from the task's events), and the
   latency set for the fastest miner it was assigned. Ratios: first-response p50 over the
   fastest miner's latency (goal ≤ 1.2: the proxy adds almost nothing) and APPROVED p50
   over first-response p50 (goal ≥ 3).
2. **Held waits.** With no miner at all (tasks stay PENDING), ``held`` concurrent
   ``POST …?wait=60`` requests are opened and kept; the proxy's resident memory is read
   from /proc before and once all are held. Extra MiB, and the count that fits in 100 MB
   at that cost per request (goal: 10,000) — once with the tasks the requests create,
   once with tasks created before the baseline (the waits repeat their Idempotency-Key),
   which counts the holding alone.

Everything on loopback, bounded in time, stopping by itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.http_load import Load, _start, percentile, stop
from miners.client import MinerClient
from miners.directory import CAPABILITIES, MinerInfo
from miners.identity import Identity
from miners.reference_validator import ReferenceValidator
from taskledger.dev import free_port

LATENCIES_MS = (50.0, 200.0, 800.0)
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


def latencies_for(task_id: str) -> list[float]:
    """This task's latencies for miners 0, 1, 2: the three set latencies, shuffled."""
    order = list(LATENCIES_MS)
    random.Random(task_id).shuffle(order)
    return order


class _TimedMinerConnection(asyncio.Protocol):
    """A miner answering each task after its set latency (a timer: no CPU while waiting)."""

    def __init__(self, index: int) -> None:
        self._index = index
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in bytes(self._buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            payload = orjson.loads(bytes(self._buffer[end + 4 : end + 4 + length]))
            del self._buffer[: end + 4 + length]
            delay = latencies_for(str(payload["task_id"]))[self._index] / 1000
            text = " ".join(str(payload["input"].get("text", "")).split()[:12])
            body = orjson.dumps({"result": {"summary": text}})
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            )
            asyncio.get_running_loop().call_later(delay, self._write, head % len(body) + body)

    def _write(self, answer: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(answer)


async def start_miners() -> tuple[list[asyncio.Server], list[MinerInfo]]:
    loop = asyncio.get_running_loop()
    servers, infos = [], []
    for index in range(len(LATENCIES_MS)):
        port = free_port("127.0.0.1")
        server = await loop.create_server(
            functools.partial(_TimedMinerConnection, index), "127.0.0.1", port, backlog=2048
        )
        servers.append(server)
        hotkey = Identity.from_uri(f"//AnswersMiner{index:02d}").ss58
        infos.append(MinerInfo(hotkey, f"http://127.0.0.1:{port}", CAPABILITIES))
    return servers, infos


def _times(history: list[dict[str, Any]]) -> dict[str, float]:
    """Each event type's first time in a task's history (epoch seconds)."""
    times: dict[str, float] = {}
    for event in history:
        at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()
        times.setdefault(event["type"], at)
    return times


async def _measure(
    load: Load, sent: dict[str, float], seen: dict[str, float], hotkeys: list[str]
) -> dict[str, list[float]]:
    first, held, approved, fastest = [], [], [], []
    semaphore = asyncio.Semaphore(16)

    async def one(task_id: str) -> None:
        async with semaphore:
            history = await load.events(task_id)
        times = _times(history)
        if "MinerResponded" not in times or "TaskApproved" not in times:
            return
        first.append((times["MinerResponded"] - sent[task_id]) * 1000)
        if task_id in seen:
            held.append((seen[task_id] - sent[task_id]) * 1000)
        approved.append((times["TaskApproved"] - sent[task_id]) * 1000)
        distributed = next(e for e in history if e["type"] == "TaskDistributed")
        assigned = [a["hotkey"] for a in distributed["data"]["assignments"]]
        latencies = latencies_for(task_id)
        fastest.append(min(latencies[hotkeys.index(h)] for h in assigned if h in hotkeys))

    await asyncio.gather(*(one(task_id) for task_id in sent))
    return {"first": first, "held": held, "approved": approved, "fastest": fastest}


async def _answers(
    url: str, key: str, wallets: Path, infos: list[MinerInfo], rate: float, seconds: float
) -> dict[str, Any]:
    validator = Identity.load_or_create(wallets, "bench-validator")
    proxy = Identity.load_or_create(wallets, "bench-proxy")
    client = MinerClient(
        validator, timeout_seconds=30, max_connections=16, max_connections_per_peer=16
    )
    reference = ReferenceValidator(validator, client, url, proxy.ss58, batch=200, concurrency=8)
    validating = asyncio.create_task(reference.run(interval=0.05))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            load = Load(session, url, key, lean=True)
            try:
                sent: dict[str, float] = {}
                seen: dict[str, float] = {}  # when the held intake answered with the first response
                started = time.monotonic()

                async def one(index: int) -> None:
                    at = time.time()
                    body = {"text": f"Document {index} talks about miners. Validators score."}
                    status, document = await load._call("POST", "/summarization?wait=30", body)
                    if status in (200, 202):
                        sent[document["task_id"]] = at
                    if status == 200 and document.get("first_response") is not None:
                        seen[document["task_id"]] = time.time()

                pending = []
                for index in range(max(1, int(rate * seconds))):
                    delay = started + index / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    pending.append(asyncio.create_task(one(index)))
                await asyncio.gather(*pending)
                await load.wait_terminal(list(sent), timeout=120)
                figures = await _measure(load, sent, seen, [info.hotkey for info in infos])
            finally:
                await load.close()
    finally:
        validating.cancel()
        await client.close()
    first_p50 = percentile(figures["first"], 0.5)
    approved_p50 = percentile(figures["approved"], 0.5)
    fastest_p50 = percentile(figures["fastest"], 0.5)
    return {
        "offered_per_second": rate,
        "tasks": len(sent),
        "measured": len(figures["first"]),
        "miner_latencies_ms": list(LATENCIES_MS),
        "first_response_p50_ms": first_p50,
        "first_response_p99_ms": percentile(figures["first"], 0.99),
        "held_answer_p50_ms": percentile(figures["held"], 0.5),
        "held_answer_p99_ms": percentile(figures["held"], 0.99),
        "held_answered": len(figures["held"]),
        "approved_p50_ms": approved_p50,
        "approved_p99_ms": percentile(figures["approved"], 0.99),
        "fastest_assigned_miner_p50_ms": fastest_p50,
        "first_response_over_fastest_miner": first_p50 / fastest_p50,
        "approved_over_first_response": approved_p50 / first_p50,
    }


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _held(url: str, key: str, pid: int, held: int, *, created: bool) -> dict[str, Any]:
    """``held`` concurrent waits; with ``created`` their tasks exist before the baseline
    (each wait repeats an Idempotency-Key), so only holding is counted."""
    headers = {"Authorization": f"Bearer {key}"}
    prefix = f"held-{created}-"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Warm: the code paths of a held request, once, before the baseline.
        async with session.post(
            f"{url}/api/v1/summarization?wait=0.2", json={"text": "warm up"}, headers=headers
        ) as response:
            await response.read()
        if created:
            semaphore = asyncio.Semaphore(64)

            async def create(index: int) -> None:
                async with (
                    semaphore,
                    session.post(
                        f"{url}/api/v1/summarization",
                        json={"text": f"held request {index}"},
                        headers={**headers, "Idempotency-Key": f"{prefix}{index}"},
                    ) as response,
                ):
                    await response.read()

            await asyncio.gather(*(create(index) for index in range(held)))
        await asyncio.sleep(1.0)
        before = _rss_mib(pid)
        answered: list[int] = []

        async def one(index: int) -> None:
            async with session.post(
                f"{url}/api/v1/summarization?wait=60",
                json={"text": f"held request {index}"},
                headers={**headers, "Idempotency-Key": f"{prefix}{index}"},
            ) as response:
                await response.read()
                answered.append(response.status)

        requests = [asyncio.create_task(one(index)) for index in range(held)]
        # Until every request is held, or the count stops growing, then let it settle.
        deadline = time.monotonic() + 90
        count, grew_at = 0, time.monotonic()
        while time.monotonic() < deadline and count < held:
            await asyncio.sleep(0.5)
            now_held = await _held_now(url, session)
            if now_held > count:
                count, grew_at = now_held, time.monotonic()
            elif time.monotonic() - grew_at > 5:
                break
        await asyncio.sleep(1.0)
        during = _rss_mib(pid)
        early = sum(1 for t in requests if t.done())
        for task in requests:
            task.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
    extra = max(0.0, during - before)
    # What the held requests cost, each: divided by those the edge really held.
    per_request_kib = extra * 1024 / max(1, count)
    return {
        "held": held,
        "held_seen": count,
        "answered_early": early,
        "rss_before_mib": before,
        "rss_held_mib": during,
        "extra_mib": extra,
        "per_request_kib": per_request_kib,
        "held_in_100_mb": int(100 * 1024 / per_request_kib) if per_request_kib > 0 else None,
    }


async def _held_now(url: str, session: aiohttp.ClientSession) -> int:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("taskledger_http_held_requests"):
            return int(float(line.split()[-1]))
    return 0


def run_answers_bench(
    rate: float = 20.0, seconds: float = 10.0, held: int = 10_000
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="taskledger-answers-bench-") as directory:
        data_dir = Path(directory) / "answers"
        data_dir.mkdir()
        miners_file = data_dir / "miners.json"

        async def answers() -> dict[str, Any]:
            servers, infos = await start_miners()
            miners_file.write_text(
                json.dumps(
                    [
                        {"hotkey": i.hotkey, "url": i.url, "capabilities": sorted(i.capabilities)}
                        for i in infos
                    ]
                )
            )
            port = free_port("127.0.0.1")
            process, ready = await asyncio.to_thread(
                _start,
                data_dir,
                port,
                "all",
                "sqlite",
                "--miners",
                "0",
                "--miners-file",
                str(miners_file),
            )
            try:
                return await _answers(
                    str(ready["url"]),
                    str(ready["key"]),
                    data_dir / "wallets",
                    infos,
                    rate,
                    seconds,
                )
            finally:
                await asyncio.to_thread(stop, [process])
                for server in servers:
                    server.close()

        figures["answers"] = asyncio.run(answers())

        for name, created in (("held_waits", False), ("held_waits_tasks_created_first", True)):
            # A fresh proxy each: memory freed by one run would flatter the next.
            held_dir = Path(directory) / name
            port = free_port("127.0.0.1")
            process, ready = _start(held_dir, port, "all", "sqlite", "--miners", "0")
            try:
                url, key = str(ready["url"]), str(ready["key"])
                figures[name] = asyncio.run(_held(url, key, process.pid, held, created=created))
            finally:
                stop([process])
    return figures


def answers_text(figures: dict[str, Any]) -> str:
    answers, held = figures["answers"], figures["held_waits"]
    only = figures["held_waits_tasks_created_first"]
    return "\n".join(
        [
            f"machine: {figures['machine']}",
            f"at {answers['offered_per_second']:.0f} tasks/s ({answers['measured']} tasks), "
            f"miners at {', '.join(f'{v:.0f}' for v in answers['miner_latencies_ms'])} ms "
            "shuffled:",
            f"  intake → first response p50 {answers['first_response_p50_ms']:.1f} ms, "
            f"p99 {answers['first_response_p99_ms']:.1f} ms",
            f"  client's held intake (wait=30) answered with it: p50 "
            f"{answers['held_answer_p50_ms']:.1f} ms, p99 {answers['held_answer_p99_ms']:.1f} ms",
            f"  intake → APPROVED p50 {answers['approved_p50_ms']:.1f} ms, "
            f"p99 {answers['approved_p99_ms']:.1f} ms",
            f"  fastest assigned miner p50 {answers['fastest_assigned_miner_p50_ms']:.1f} ms",
            f"  first response / fastest miner: "
            f"{answers['first_response_over_fastest_miner']:.2f} (goal ≤ 1.2)",
            f"  APPROVED / first response: {answers['approved_over_first_response']:.1f} "
            "(goal ≥ 3)",
            f"held waits: {held['held_seen']:,} of {held['held']:,} held, "
            f"{held['extra_mib']:.1f} MiB extra ({held['per_request_kib']:.1f} KiB each); "
            f"in 100 MB: {held['held_in_100_mb']} (goal 10,000)",
            f"held waits on tasks created before: {only['extra_mib']:.1f} MiB extra "
            f"({only['per_request_kib']:.1f} KiB each); in 100 MB: {only['held_in_100_mb']}",
        ]
    )


def answers_markdown(figures: dict[str, Any], command: str) -> str:
    answers, held = figures["answers"], figures["held_waits"]
    only = figures["held_waits_tasks_created_first"]
    return "\n".join(
        [
            "## Answers first (embedded log; edge and processors in one process)",
            "",
            f"Command: `{command}`. Three miners per task answering after 50, 200 and 800 ms "
            "(the order shuffled per task), the reference validator over HTTP, a steady "
            f"offered rate of {answers['offered_per_second']:.0f} tasks/s, each intake "
            "held with `wait=30`; times per task from its send time to its first "
            "MinerResponded and to TaskApproved (from its events), and to the held intake's "
            "answer. Held waits: concurrent `POST /api/v1/summarization?wait=60` with no "
            "miner (tasks stay PENDING), the proxy's resident memory before and while held.",
            "",
            "| figure | goal | measured |",
            "|---|---|---|",
            f"| intake → first response p50 / fastest assigned miner's latency | ≤ 1.2 | "
            f"{answers['first_response_over_fastest_miner']:.2f} "
            f"({answers['first_response_p50_ms']:.1f} / "
            f"{answers['fastest_assigned_miner_p50_ms']:.1f} ms; p99 "
            f"{answers['first_response_p99_ms']:.1f} ms) |",
            f"| the client's `wait=30` intake answered with the first response | | p50 "
            f"{answers['held_answer_p50_ms']:.1f} ms, p99 {answers['held_answer_p99_ms']:.1f} ms |",
            f"| intake → APPROVED p50 / first response p50 | ≥ 3 | "
            f"{answers['approved_over_first_response']:.1f} "
            f"(APPROVED p50 {answers['approved_p50_ms']:.1f} ms, "
            f"p99 {answers['approved_p99_ms']:.1f} ms) |",
            f"| concurrent `wait` requests held in 100 MB extra | ≥ 10,000 | "
            f"{held['held_in_100_mb']} ({held['held']:,} held: "
            f"{held['extra_mib']:.1f} MiB, {held['per_request_kib']:.1f} KiB each, "
            "the tasks they create included) |",
            f"| the same, holding only (tasks created before, waits repeat their "
            f"Idempotency-Key) | ≥ 10,000 | {only['held_in_100_mb']} "
            f"({only['extra_mib']:.1f} MiB, {only['per_request_kib']:.1f} KiB each) |",
        ]
    )
