"""Where the application keeps the context the composition root handed in."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from http_edge.context import EdgeContext

CONTEXT: Final = web.AppKey("context", EdgeContext)


def context_of(request: web.Request) -> EdgeContext:
    return request.app[CONTEXT]
