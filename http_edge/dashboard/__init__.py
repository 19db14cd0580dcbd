"""``GET /dashboard``: the operators' live page, static files served from this package.

The page holds no data: it asks for the admin key once (kept in the tab's
``sessionStorage``) and polls the admin endpoints with it, which check it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from http_edge.errors import ApiError

_HERE: Final = Path(__file__).parent
_FILES: Final = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


async def page(request: web.Request) -> web.Response:
    return web.Response(
        body=(_HERE / "index.html").read_bytes(),
        content_type="text/html",
        charset="utf-8",
        headers=_HEADERS,
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _FILES:
        raise ApiError(404, "not_found", "no such file")
    return web.Response(
        body=(_HERE / name).read_bytes(),
        content_type=_FILES[name],
        charset="utf-8",
        headers=_HEADERS,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/static/{name}", static)
