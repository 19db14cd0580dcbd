"""``GET /api/v1/checkpoints``: the log chain's signed checkpoints, for anyone to anchor."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from events.capabilities import LogFeatures
from http_edge.errors import ApiError
from http_edge.keys import context_of

PAGE: Final = 1000
# Log positions are signed 64-bit in SQLite and Kafka alike.
MAX_POSITION: Final = 2**63 - 1


async def checkpoints(request: web.Request) -> web.Response:
    given = request.query.getall("after", [])
    if len(given) > 1 or (given and not _is_position(given[0])):
        raise ApiError(400, "invalid_request", "after must be one log position (a whole number)")
    after = int(given[0]) if given else None
    kept = context_of(request).log_features.checkpoints
    found = await kept.log_checkpoints(after, PAGE) if kept is not None else []
    return web.json_response({"checkpoints": [checkpoint.to_document() for checkpoint in found]})


async def anchors_status(features: LogFeatures) -> dict[str, Any]:
    """What the operators' page shows of the log chain's checkpoints.

    Shaped for ``http_edge.admin_stats.ANCHORS``: set ``app[ANCHORS]`` to
    ``functools.partial(anchors_status, context.log_features)``.
    """
    if features.checkpoints is None:
        return {"configured": False, "status": "this log keeps no checkpoints"}
    latest = await features.latest_checkpoint()
    if latest is None:
        return {"configured": True, "status": "no checkpoint yet", "latest": None}
    return {
        "configured": True,
        "status": "ok",
        "latest": {
            "partition": latest.partition,
            "position": latest.position,
            "events": latest.events,
            "log_hash": latest.log_hash,
            "at": latest.at,
        },
    }


def _is_position(raw: str) -> bool:
    return raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_POSITION
