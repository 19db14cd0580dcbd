"""Input links: ``GET /api/v1/blobs/{digest}?task=&expires=&sig=``.

A link is made for one hotkey, one task and one file, and expires. Using it
takes a btauth/1 signature by that hotkey, which must still belong to a miner
assigned to the task (for the task's inputs) or to an allowed validator (for
its inputs and its miners' audio results).
"""

from __future__ import annotations

import time
from typing import Final

from aiohttp import web

from aggregates import TaskState
from blobs.port import validate_digest
from http_edge.auth import authenticate_peer, require_signed
from http_edge.bodies import parse_task_id
from http_edge.context import EdgeContext
from http_edge.errors import ApiError
from http_edge.keys import context_of
from http_edge.peers import admit_peer, is_peer
from projections.task_blobs import task_blobs

# How long a redirect to the blob store's own signed URL stays usable.
_REDIRECT_SECONDS: Final = 60


def _forbidden() -> ApiError:
    return ApiError(403, "forbidden", "this hotkey may not fetch this file")


def _may_fetch(state: TaskState, digest: str, hotkey: str, validator: bool) -> bool:
    if not state.exists:
        return False
    if validator and digest in task_blobs(state):
        return True
    return digest in state.blobs and state.slot(hotkey) is not None


async def _allowed(context: EdgeContext, task_id: str, digest: str, hotkey: str) -> TaskState:
    validator = hotkey in await context.pool.validators()
    projected = await context.store.get_task(task_id)
    if projected is not None and _may_fetch(projected, digest, hotkey, validator):
        return projected
    # The read model may not have seen the assignment yet: the log has.
    logged = await context.commands.load(task_id)
    if _may_fetch(logged, digest, hotkey, validator):
        return logged
    raise _forbidden()


def link_for(context: EdgeContext, digest: str, task_id: str, hotkey: str) -> str:
    """An absolute link for ``hotkey`` on the proxy's public URL (right behind a TLS proxy too)."""
    expires = int(time.time()) + context.input_link_seconds
    query = context.links.query(digest, task_id, hotkey, expires)
    return f"{context.public_url.rstrip('/')}/api/v1/blobs/{digest}?{query}"


def _content_type(state: TaskState, digest: str) -> str:
    declared = (state.input or {}).get("content_type")
    if state.blobs and digest == state.blobs[0] and isinstance(declared, str):
        return declared
    if digest not in state.blobs:
        return "audio/wav"  # the only files a task refers to besides its inputs
    return "application/octet-stream"


async def input_file(request: web.Request) -> web.StreamResponse:
    context = context_of(request)
    require_signed(request)
    try:
        digest = validate_digest(request.match_info["digest"])
    except ValueError:
        raise ApiError(400, "invalid_digest", "a file is named by its SHA-256 in hex") from None
    query = request.query
    task_id = parse_task_id(query.get("task", ""))
    signature = query.get("sig", "")
    try:
        expires = int(query.get("expires", ""))
    except ValueError:
        raise ApiError(400, "invalid_link", "the link lacks a valid expiry") from None
    await admit_peer(request, context, is_peer, _forbidden)
    hotkey = await authenticate_peer(request, context, b"")
    if not context.links.valid(digest, task_id, hotkey, expires, signature, time.time()):
        raise ApiError(403, "invalid_link", "the link is not valid for this hotkey, or expired")
    state = await _allowed(context, task_id, digest, hotkey)
    direct = await context.blobs.signed_url(digest, _REDIRECT_SECONDS)
    if direct is not None:
        raise web.HTTPTemporaryRedirect(direct)
    return web.Response(
        body=await context.blobs.get(digest),
        content_type=_content_type(state, digest),
        headers={"Cache-Control": "private, no-store"},
    )
