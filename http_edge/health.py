"""``GET /api/v1/health``: can this process serve, and how well.

503 when the event log or the read models cannot serve (nothing works
without them); ``degraded`` when something less vital is wrong: the blob
store, the miner directory, no healthy miner, read models far behind the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from http_edge.context import EdgeContext
from http_edge.errors import error_body
from http_edge.keys import context_of

PROBE_SECONDS: Final = 2.0
# Read models this far behind the log make statuses visibly stale.
LAG_LIMIT_EVENTS: Final = 10_000


async def _probe(check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    try:
        await asyncio.wait_for(check(), PROBE_SECONDS)
    except Exception as error:
        # The kind of failure only: health is public, the details go to the logs.
        return {"status": "unavailable", "error": type(error).__name__}
    return {"status": "ok"}


async def miner_figures(context: EdgeContext) -> dict[str, Any]:
    try:
        miners = await asyncio.wait_for(context.pool.miners(), PROBE_SECONDS)
    except Exception:
        return {"known": 0, "healthy": 0, "status": "unavailable"}
    healthy = sum(1 for miner in miners if context.selector.healthy(miner.hotkey))
    return {"known": len(miners), "healthy": healthy, "status": "ok"}


async def _processors(context: EdgeContext) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(context.processor_figures(), PROBE_SECONDS)
    except Exception:
        return None


def _lagging(figures: dict[str, Any]) -> bool:
    lag = figures.get("projection_lag_events")
    return isinstance(lag, int | float) and lag > LAG_LIMIT_EVENTS


async def health(request: web.Request) -> web.Response:
    context = context_of(request)
    event_log, read_models, blobs, miners, processors = await asyncio.gather(
        _probe(context.log.check),
        _probe(context.store.check),
        _probe(context.blobs.check),
        miner_figures(context),
        _processors(context),
    )
    components = {
        "event_log": event_log,
        "read_models": read_models,
        "blobs": blobs,
        "miners": miners,
        "processors": processors if processors is not None else {"status": "unavailable"},
    }
    document: dict[str, Any] = {
        "status": "ok",
        "hotkey": context.identity.ss58,
        "components": components,
    }
    if event_log["status"] != "ok" or read_models["status"] != "ok":
        document["status"] = "unavailable"
        document.update(error_body("unavailable", "the event log or the read models cannot serve"))
        return web.json_response(document, status=503)
    if (
        blobs["status"] != "ok"
        or miners["status"] != "ok"
        or miners["healthy"] == 0
        or processors is None
        or _lagging(processors)
    ):
        document["status"] = "degraded"
    return web.json_response(document)
