"""`taskledger miner` and `taskledger validator`: the reference peers against any proxy."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from aiohttp import web
from bittensor.http_auth import InMemoryNonceStore

from miners.client import MinerClient, PeerUnreachable
from miners.directory import CAPABILITIES
from miners.identity import Identity
from miners.reference_miner import MinerKnobs, ReferenceMiner
from miners.reference_validator import ReferenceValidator


def add_miner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wallets-dir", type=Path, default=Path(".taskledger/wallets"))
    parser.add_argument("--wallet", default="reference-miner")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument(
        "--capabilities", default=",".join(sorted(CAPABILITIES)), help="comma-separated"
    )
    parser.add_argument("--proxy-hotkey", action="append", help="accept work only from these")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each task")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answered with 500")
    parser.add_argument("--silence-rate", type=float, default=0.0, help="share never answered")
    parser.add_argument("--deferred", action="store_true", help="answer 202, post the result later")


def add_validator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wallets-dir", type=Path, default=Path(".taskledger/wallets"))
    parser.add_argument("--wallet", default="reference-validator")
    parser.add_argument("--proxy", default="http://127.0.0.1:8080", help="the proxy's base URL")
    parser.add_argument("--proxy-hotkey", help="default: asked from the proxy's /api/v1/health")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--once", action="store_true", help="evaluate one batch and stop")


async def until_stopped() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def run_miner(arguments: argparse.Namespace) -> int:
    identity = Identity.load_or_create(arguments.wallets_dir, arguments.wallet)
    client = MinerClient(identity, timeout_seconds=30.0, max_connections=64)
    knobs = MinerKnobs(
        latency_seconds=arguments.latency,
        error_rate=arguments.error_rate,
        silence_rate=arguments.silence_rate,
        deferred=arguments.deferred,
    )
    miner = ReferenceMiner(
        identity,
        client,
        InMemoryNonceStore(),
        capabilities=frozenset(filter(None, arguments.capabilities.split(","))),
        knobs=knobs,
        proxy_hotkeys=frozenset(arguments.proxy_hotkey) if arguments.proxy_hotkey else None,
    )
    runner = web.AppRunner(miner.app())
    await runner.setup()
    await web.TCPSite(runner, arguments.host, arguments.port).start()
    print(
        f"reference miner {identity.ss58} on http://{arguments.host}:{arguments.port} "
        f"({', '.join(sorted(miner.capabilities))})",
        flush=True,
    )
    try:
        await until_stopped()
    finally:
        await runner.cleanup()
        await client.close()
    return 0


async def proxy_hotkey_of(client: MinerClient, proxy: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{proxy}/api/v1/health") as reply:
        document = await reply.json()
    return str(document["hotkey"])


async def run_validator(arguments: argparse.Namespace) -> int:
    identity = Identity.load_or_create(arguments.wallets_dir, arguments.wallet)
    # A validator talks to the proxy alone: every connection of the pool may go there.
    client = MinerClient(
        identity, timeout_seconds=30.0, max_connections=16, max_connections_per_peer=16
    )
    try:
        hotkey = arguments.proxy_hotkey or await proxy_hotkey_of(client, arguments.proxy)
        validator = ReferenceValidator(identity, client, arguments.proxy, hotkey)
        print(f"reference validator {identity.ss58} against {arguments.proxy}", flush=True)
        if arguments.once:
            print(f"evaluated {await validator.run_once()} task(s)")
            return 0
        running = asyncio.create_task(validator.run(arguments.interval))
        await until_stopped()
        running.cancel()
    except PeerUnreachable as error:
        print(f"validator: {error}")
        return 1
    finally:
        await client.close()
    return 0
