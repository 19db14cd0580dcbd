"""Running the HTTP edge and the processors until a signal says stop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from http_edge.app import create_app
from http_edge.connections import CappedSite, ConnectionLimits, edge_runner
from miners.reference_cli import until_stopped
from taskledger.collector import freeze_startup_objects
from taskledger.settings import Settings
from taskledger.system import System


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(settings.idle_timeout_seconds, settings.max_connections)


async def start_edge(system: System, host: str, port: int) -> web.AppRunner:
    limits = connection_limits(system.settings)
    # A refused upload is not drained for long: the client has its answer already.
    runner = edge_runner(
        create_app(system.edge_context()), limits, access_log=None, lingering_time=1.0
    )
    await runner.setup()
    try:
        await CappedSite(runner, limits.max_connections, host=host, port=port).start()
    except OSError as error:
        await runner.cleanup()
        raise SystemExit(f"taskledger: cannot listen on {host}:{port}: {error.strerror}") from None
    return runner


async def serve_until_stopped(
    system: System,
    *,
    edge: bool,
    processors: bool,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    runner = None
    try:
        await system.start(edge=edge, processors=processors)
        if edge:
            runner = await start_edge(system, system.settings.host, system.settings.port)
        freeze_startup_objects()
        if on_ready is not None:
            await on_ready()
        await until_stopped()
    finally:
        if runner is not None:
            await runner.cleanup()
        await system.close()
