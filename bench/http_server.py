"""The system under test for `taskledger bench http`: the embedded proxy with fast miners.

Run by the benchmark as two processes on one data directory, as an operator
would on a 2-core machine: `--role edge` (the HTTP edge) and `--role
processors` (dispatcher, deadlines, projections, with fast miners answering
at once and the reference validator posting over HTTP). Each prints one JSON
line when ready, then runs until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from miners.client import MinerClient
from miners.directory import CAPABILITIES, MinerInfo
from miners.identity import Identity
from miners.reference_validator import ReferenceValidator
from taskledger.collector import tune_collector
from taskledger.dev import free_port
from taskledger.serving import serve_until_stopped
from taskledger.settings import Settings
from taskledger.system import build_system


async def _fast_miner(index: int) -> tuple[MinerInfo, web.AppRunner]:
    async def task(request: web.Request) -> web.Response:
        payload: dict[str, Any] = orjson.loads(await request.read())
        text = str(payload["input"].get("text", ""))
        answer = {"result": {"summary": " ".join(text.split()[:12])}}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    app = web.Application()
    app.router.add_post("/task", task)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port("127.0.0.1")
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    return MinerInfo(f"5BenchMiner{index:02d}", f"http://127.0.0.1:{port}", CAPABILITIES), runner


async def main(data_dir: Path, port: int, miners: int, role: str, event_log: str) -> None:
    key = "bench-key"
    settings = replace(
        Settings(),
        data_dir=data_dir,
        port=port,
        event_log=event_log,
        api_keys={"bench": key},
        rate_per_second=1_000_000.0,
        rate_burst=1_000_000,
    )
    with_processors = role != "edge"
    peers = [await _fast_miner(index) for index in range(miners)] if with_processors else []
    proxy = Identity.load_or_create(settings.wallets_dir, "bench-proxy")
    validator = Identity.load_or_create(settings.wallets_dir, "bench-validator")
    system = build_system(
        settings,
        extra_miners=[info for info, _ in peers],
        extra_validators=[validator.ss58],
        identity=proxy,
        with_processors=with_processors,
    )
    # A validator talks to the proxy alone: every connection of the pool may go there.
    client = MinerClient(
        validator, timeout_seconds=30.0, max_connections=16, max_connections_per_peer=16
    )
    background: list[asyncio.Task[None]] = []

    async def ready() -> None:
        if with_processors:
            reference = ReferenceValidator(
                validator, client, settings.base_url, proxy.ss58, batch=200, concurrency=16
            )
            background.append(asyncio.create_task(reference.run(interval=0.05)))
        print(json.dumps({"url": settings.base_url, "key": key, "role": role}), flush=True)

    try:
        await serve_until_stopped(
            system, edge=role != "processors", processors=with_processors, on_ready=ready
        )
    finally:
        for task in background:
            task.cancel()
        await client.close()
        for _, runner in peers:
            await runner.cleanup()


if __name__ == "__main__":
    # The collector as every `taskledger` command runs it (taskledger/cli.py), so that
    # these processes measure what `taskledger serve` does.
    tune_collector()
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--miners", type=int, default=6)
    parser.add_argument("--role", choices=("all", "edge", "processors"), default="all")
    parser.add_argument("--event-log", default="sqlite", help="sqlite or kafka://HOST:PORT…")
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.data_dir,
            arguments.port,
            arguments.miners,
            arguments.role,
            arguments.event_log,
        )
    )
