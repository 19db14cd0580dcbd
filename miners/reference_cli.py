"""`taskledger miner` and `taskledger validator`: the reference peers against any proxy."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web
from bittensor.http_auth import InMemoryNonceStore

from miners.client import MinerClient, PeerUnreachable
from miners.identity import Identity
from miners.receipts import ReceiptBook
from miners.reference_miner import MinerKnobs, ReferenceMiner
from miners.reference_validator import ReferenceValidator


async def until_stopped() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await stop.wait()


RECEIPTS_DIR = Path(".taskledger/receipts")


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
        receipts=ReceiptBook(
            arguments.receipts or Path(f".taskledger/receipts/{identity.name}.jsonl")
        ),
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


def weights_loop(
    arguments: argparse.Namespace, identity: Identity, client: MinerClient, proxy_hotkey: str
) -> Callable[..., Coroutine[Any, Any, None]] | None:
    """With ``--set-weights``: what submits the proxy's weights, once or every interval."""
    if not arguments.set_weights:
        return None
    if not arguments.network or arguments.netuid is None:
        raise SystemExit("validator: --set-weights needs --network and --netuid")
    from events.sqlite_log import SqliteEventLog
    from miners.validator_weights import (
        WeightsUnavailable,
        chain_client,
        describe,
        set_weights_once,
    )
    from miners.weights import WeightsSetter

    setter = WeightsSetter(
        chain_client(arguments.network), identity.signer, arguments.netuid, arguments.version_key
    )

    async def submit(*, once: bool = False) -> None:
        ledger = SqliteEventLog(arguments.ledger / "events.db")
        try:
            while True:
                try:
                    outcome = await set_weights_once(
                        client, arguments.proxy, proxy_hotkey, setter, ledger
                    )
                    print(describe(outcome), flush=True)
                except (WeightsUnavailable, PeerUnreachable, LookupError) as error:
                    print(f"weights: {error}", flush=True)
                if once:
                    return
                await asyncio.sleep(arguments.weights_interval)
        finally:
            await ledger.close()

    return submit


async def run_validator(arguments: argparse.Namespace) -> int:
    identity = Identity.load_or_create(arguments.wallets_dir, arguments.wallet)
    # A validator talks to the proxy alone: every connection of the pool may go there.
    connections = arguments.concurrency
    client = MinerClient(
        identity,
        timeout_seconds=30.0,
        max_connections=connections,
        max_connections_per_peer=connections,
    )
    try:
        hotkey = arguments.proxy_hotkey or await proxy_hotkey_of(client, arguments.proxy)
        validator = ReferenceValidator(
            identity,
            client,
            arguments.proxy,
            hotkey,
            batch=arguments.batch,
            concurrency=arguments.concurrency,
        )
        print(f"reference validator {identity.ss58} against {arguments.proxy}", flush=True)
        weights = weights_loop(arguments, identity, client, hotkey)
        if arguments.once:
            print(f"evaluated {await validator.run_once()} task(s)")
            if weights is not None:
                await weights(once=True)
            return 0
        running = asyncio.create_task(validator.run(arguments.interval))
        setting = asyncio.create_task(weights()) if weights is not None else None
        await until_stopped()
        running.cancel()
        if setting is not None:
            setting.cancel()
    except PeerUnreachable as error:
        print(f"validator: {error}")
        return 1
    finally:
        await client.close()
    return 0
