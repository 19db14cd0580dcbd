"""Each client key's own ``rate_per_second``, counted across every edge.

A middleware, so that every endpoint a client key opens is counted, whichever
module serves it. Only keys that have a rate of their own cost a store call; the
edge-wide token bucket (``TASKLEDGER_RATE_LIMIT``) still applies to every key.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from http_edge.errors import ApiError
from http_edge.keys import context_of

_BEARER: Final = "bearer "


@web.middleware
async def key_rate_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    registry = context_of(request).client_keys
    if registry is not None and registry.has_rates:
        header = request.headers.get("Authorization", "")
        if header[: len(_BEARER)].lower() == _BEARER:
            name = registry.client_for(header[len(_BEARER) :].strip())
            if name is not None and not await registry.take_rate(name):
                raise ApiError(
                    429,
                    "rate_limited",
                    "too many requests for this API key; slow down",
                    headers={"Retry-After": "1"},
                )
    return await handler(request)
