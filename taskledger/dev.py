"""`taskledger dev`: the whole subnet proxy on one machine, with reference miners and validator."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web
from bittensor.http_auth import InMemoryNonceStore

from miners.client import MinerClient
from miners.directory import CAPABILITIES, MinerInfo
from miners.identity import Identity
from miners.reference_miner import ReferenceMiner
from miners.reference_validator import ReferenceValidator
from taskledger.private_files import write_private
from taskledger.serving import serve_until_stopped
from taskledger.settings import Settings
from taskledger.system import build_system


def dev_api_key(settings: Settings) -> tuple[Settings, str]:
    """The client key: the first configured one, or one made once and kept in the data dir."""
    path = settings.data_dir / "api-key"
    if settings.api_keys:
        key = next(iter(settings.api_keys.values()))
    elif path.exists():
        key = path.read_text().strip()
        settings = replace(settings, api_keys={"dev": key})
    else:
        key = "tl_" + secrets.token_urlsafe(24)
        settings = replace(settings, api_keys={"dev": key})
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, key + "\n")
    return settings, key


def dev_admin_key(settings: Settings) -> tuple[Settings, str]:
    """The operator's key: the first configured one, or one made once and kept (0600) in
    ``<data dir>/admin-key``."""
    path = settings.data_dir / "admin-key"
    if settings.admin_keys:
        key = next(iter(settings.admin_keys.values()))
    elif path.exists():
        key = path.read_text().strip()
        settings = replace(settings, admin_keys={"dev-admin": key})
    else:
        key = "tla_" + secrets.token_urlsafe(24)
        settings = replace(settings, admin_keys={"dev-admin": key})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(key + "\n")
    return settings, key


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _closer(client: MinerClient) -> Callable[[web.Application], Awaitable[None]]:
    async def close(_app: web.Application) -> None:
        await client.close()

    return close


@dataclass
class DevPeers:
    miners: list[MinerInfo]
    runners: list[web.AppRunner]
    client: MinerClient
    validator: Identity


async def start_reference_miners(settings: Settings, proxy: Identity, count: int) -> DevPeers:
    validator = Identity.load_or_create(settings.wallets_dir, "dev-validator")
    client = MinerClient(validator, timeout_seconds=30.0, max_connections=64)
    miners, runners = [], []
    for index in range(count):
        identity = Identity.load_or_create(settings.wallets_dir, f"dev-miner-{index}")
        miner_client = MinerClient(identity, timeout_seconds=30.0, max_connections=32)
        miner = ReferenceMiner(
            identity,
            miner_client,
            InMemoryNonceStore(),
            proxy_hotkeys=frozenset({proxy.ss58}),
        )
        app = miner.app()
        app.on_cleanup.append(_closer(miner_client))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port(settings.host)
        await web.TCPSite(runner, settings.host, port).start()
        runners.append(runner)
        miners.append(MinerInfo(identity.ss58, f"http://{settings.host}:{port}", CAPABILITIES))
    return DevPeers(miners, runners, client, validator)


def banner(
    settings: Settings,
    key: str,
    proxy: Identity,
    peers: DevPeers,
    data_dir: Path,
    admin_key: str | None = None,
) -> str:
    base = settings.base_url
    admin = [f"  admin key:     {admin_key}   (also in {data_dir / 'admin-key'})"]
    return "\n".join(
        [
            "",
            f"taskledger is running at {base}",
            f"  API key:       {key}   (also in {data_dir / 'api-key'})",
            f"  dashboard:     {base}/dashboard",
            *(admin if admin_key else []),
            f"  proxy hotkey:  {proxy.ss58}",
            f"  miners:        {len(peers.miners)} reference miners on loopback",
            f"  data:          {data_dir}",
            "",
            "Try it:",
            f"  curl -s -X POST {base}/api/v1/summarization \\",
            f"       -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\",
            '       -d \'{"text": "Miners do the work. Validators score it."}\'',
            f"  curl -s {base}/api/v1/health",
            "",
            "Stop with Ctrl-C.",
            "",
        ]
    )


async def run_dev(settings: Settings, *, miners: int, validator: bool) -> int:
    settings, key = dev_api_key(settings)
    # The reference miners listen on loopback.
    settings = replace(settings, allow_private_miners=True)
    settings, admin_key = dev_admin_key(settings)
    proxy = Identity.load_or_create(settings.wallets_dir, settings.wallet)
    peers = await start_reference_miners(settings, proxy, miners)
    system = build_system(
        settings,
        extra_miners=peers.miners,
        extra_validators=[peers.validator.ss58],
        identity=proxy,
    )
    background: list[asyncio.Task[None]] = []

    async def ready() -> None:
        if validator:
            reference = ReferenceValidator(
                peers.validator, peers.client, settings.base_url, proxy.ss58
            )
            background.append(asyncio.create_task(reference.run()))
        data_dir = settings.data_dir.resolve()
        print(banner(settings, key, proxy, peers, data_dir, admin_key), flush=True)

    try:
        await serve_until_stopped(system, edge=True, processors=True, on_ready=ready)
    finally:
        for task in background:
            task.cancel()
        for runner in peers.runners:
            await runner.cleanup()
        await peers.client.close()
    return 0
