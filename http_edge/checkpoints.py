"""``GET /api/v1/checkpoints``: the log chain's signed checkpoints, for anyone to anchor."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from http_edge.errors import ApiError
from http_edge.keys import context_of

PAGE: Final = 1000


async def checkpoints(request: web.Request) -> web.Response:
    raw = request.query.get("after", "")
    if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
        raise ApiError(400, "invalid_request", "after must be a log position (a whole number)")
    after = int(raw) if raw else None
    log = context_of(request).log
    read = getattr(log, "log_checkpoints", None)
    found = await read(after) if read is not None else []
    return web.json_response(
        {"checkpoints": [checkpoint.to_document() for checkpoint in found[:PAGE]]}
    )
