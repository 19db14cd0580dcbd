"""The system under test for `taskledger bench http`: the embedded proxy with fast miners.

Run by the benchmark as processes on one data directory, as an operator would
on a 2-core machine: `--role edge` (the HTTP edge) and `--role processors`
(dispatcher, deadlines, projections), and beside them `--role peers`: the
fast miners, answering at once, and the reference validator posting over
HTTP, the parties that in production run on machines of their own. With
`--miners-file` the processors send work to the miners listed there (written
by the peers); without it they run the peers in their own process, as before.
Each prints one JSON line when ready, then runs until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from events.kafka import configure_kafka_logging
from miners.client import MinerClient
from miners.directory import CAPABILITIES, MinerInfo
from miners.identity import Identity
from miners.reference_cli import until_stopped
from miners.reference_validator import ReferenceValidator
from taskledger.collector import tune_collector
from taskledger.dev import free_port
from taskledger.serving import serve_until_stopped
from taskledger.settings import Settings
from taskledger.system import build_system

# The operator's key of `bench http --dashboard` (loopback only, a throwaway system).
ADMIN_KEY = "bench-admin-key"


def _summary_answer(request_body: bytes) -> bytes:
    try:
        payload: dict[str, Any] = orjson.loads(request_body)
        text = str(payload["input"].get("text", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    body = orjson.dumps({"result": {"summary": " ".join(text.split()[:12])}})
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


class _FastMinerConnection(asyncio.Protocol):
    """A miner that answers every request at once, on kept-alive HTTP/1.1 connections.

    It stands in for miners on machines of their own: plain asyncio rather than an
    aiohttp application, so that it takes as little as it can of the cores the
    system under test runs on. It reads one request at a time, as clients send them.
    """

    def __init__(self, open_connections: set[asyncio.Transport]) -> None:
        self._open = open_connections
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._open.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in bytes(self._buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            self._transport.write(_summary_answer(body))


class FastMiners:
    """``count`` fast miners on loopback ports, each with a real SS58 hotkey."""

    def __init__(self) -> None:
        self.infos: list[MinerInfo] = []
        self._servers: list[asyncio.Server] = []
        self._open: set[asyncio.Transport] = set()

    async def start(self, count: int) -> FastMiners:
        loop = asyncio.get_running_loop()
        for index in range(count):
            port = free_port("127.0.0.1")
            server = await loop.create_server(
                lambda: _FastMinerConnection(self._open), "127.0.0.1", port, backlog=2048
            )
            self._servers.append(server)
            # A real SS58 hotkey, as a miners file (read by the processors) requires.
            hotkey = Identity.from_uri(f"//BenchMiner{index:02d}").ss58
            self.infos.append(MinerInfo(hotkey, f"http://127.0.0.1:{port}", CAPABILITIES))
        return self

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for transport in list(self._open):
            transport.close()
        for server in self._servers:
            await server.wait_closed()


def _validator_client(validator: Identity) -> MinerClient:
    # A validator talks to the proxy alone: every connection of the pool may go there.
    return MinerClient(
        validator, timeout_seconds=30.0, max_connections=16, max_connections_per_peer=16
    )


def _reference_validator(
    settings: Settings, validator: Identity, proxy: Identity, client: MinerClient
) -> ReferenceValidator:
    return ReferenceValidator(
        validator, client, settings.base_url, proxy.ss58, batch=200, concurrency=16
    )


async def _proxy_listening(settings: Settings) -> None:
    """Wait until the edge accepts connections, so the validator starts without complaint."""
    while True:
        try:
            _, writer = await asyncio.open_connection(settings.host, settings.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def run_peers(settings: Settings, miners: int, miners_file: Path) -> None:
    """The fast miners and the reference validator, in a process of their own."""
    peers = await FastMiners().start(miners)
    entries = [
        {"hotkey": info.hotkey, "url": info.url, "capabilities": sorted(info.capabilities)}
        for info in peers.infos
    ]
    draft = miners_file.with_name(miners_file.name + ".draft")
    draft.write_text(json.dumps(entries))
    draft.replace(miners_file)  # whole or not at all, for the processors to read
    proxy = Identity.load_or_create(settings.wallets_dir, "bench-proxy")
    validator = Identity.load_or_create(settings.wallets_dir, "bench-validator")
    client = _validator_client(validator)
    reference = _reference_validator(settings, validator, proxy, client)

    async def validate() -> None:
        await _proxy_listening(settings)
        await reference.run(interval=0.05)

    validating = asyncio.create_task(validate())
    print(json.dumps({"role": "peers", "miners_file": str(miners_file)}), flush=True)
    try:
        await until_stopped()
    finally:
        validating.cancel()
        await client.close()
        await peers.stop()


async def main(
    data_dir: Path, port: int, miners: int, role: str, event_log: str, miners_file: Path | None
) -> None:
    key = "bench-key"
    settings = replace(
        Settings(),
        data_dir=data_dir,
        port=port,
        event_log=event_log,
        api_keys={"bench": key},
        admin_keys={"bench-admin": ADMIN_KEY},
        rate_per_second=1_000_000.0,
        rate_burst=1_000_000,
        peer_rate_per_second=1_000_000.0,
        peer_rate_burst=1_000_000,
        allow_private_miners=True,
        # Sized for the load, as the rates above: bench answers holds 10,000 waits at once.
        max_connections=100_000,
    )
    if role == "peers":
        assert miners_file is not None, "--role peers writes the --miners-file"
        await run_peers(settings, miners, miners_file)
        return
    with_processors = role != "edge"
    peers_here = with_processors and miners_file is None
    peers = await FastMiners().start(miners if peers_here else 0)
    if with_processors and miners_file is not None:
        settings = replace(settings, miners_file=miners_file)
    proxy = Identity.load_or_create(settings.wallets_dir, "bench-proxy")
    validator = Identity.load_or_create(settings.wallets_dir, "bench-validator")
    system = build_system(
        settings,
        extra_miners=peers.infos,
        extra_validators=[validator.ss58],
        identity=proxy,
        with_processors=with_processors,
    )
    client = _validator_client(validator)
    background: list[asyncio.Task[None]] = []

    async def ready() -> None:
        if peers_here:
            reference = _reference_validator(settings, validator, proxy, client)
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
        await peers.stop()


if __name__ == "__main__":
    # The collector as every `taskledger` command runs it (taskledger/cli.py), so that
    # these processes measure what `taskledger serve` does.
    tune_collector()
    configure_kafka_logging()
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--miners", type=int, default=6)
    parser.add_argument("--role", choices=("all", "edge", "processors", "peers"), default="all")
    parser.add_argument("--event-log", default="sqlite", help="sqlite or kafka://HOST:PORT…")
    parser.add_argument(
        "--miners-file", type=Path, help="peers: where to list the miners; processors: read them"
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.data_dir,
            arguments.port,
            arguments.miners,
            arguments.role,
            arguments.event_log,
            arguments.miners_file,
        )
    )
