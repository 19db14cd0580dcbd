"""A task's status as Server-Sent Events, from now until it is finished.

Changes arrive from the context's status changes when there are any: the
in-process broadcaster of the projection (task states), or on Kafka the status
topic (status documents). The read model is re-read every ``poll_seconds`` all
the same, so a change made by another process (or missed while subscribing)
still shows up. Only newer versions are sent, so each status goes out once and
in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from aggregates import TERMINAL, TaskState
from http_edge.auth import authenticate_client
from http_edge.bodies import path_task_id
from http_edge.context import EdgeContext
from http_edge.keys import context_of
from http_edge.lookup import client_task, current_state
from projections import status_document


@dataclass
class StreamSettings:
    poll_seconds: float = 0.5
    heartbeat_seconds: float = 15.0
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    open_streams: int = 0


STREAMS: Final = web.AppKey("streams", StreamSettings)


async def close_streams(app: web.Application) -> None:
    """On shutdown: end every open stream at its next tick instead of holding the server."""
    app[STREAMS].closing.set()


def _document(change: TaskState | dict[str, Any]) -> dict[str, Any]:
    return change if isinstance(change, dict) else status_document(change)


def _status_event(document: dict[str, Any]) -> bytes:
    data = orjson.dumps(document)
    return b"id: %d\nevent: status\ndata: %s\n\n" % (document["version"], data)


async def _current(context: EdgeContext, task_id: str, known: dict[str, Any]) -> dict[str, Any]:
    state = await current_state(context, task_id)
    return status_document(state) if state is not None else known


async def stream(request: web.Request) -> web.StreamResponse:
    context = context_of(request)
    settings = request.app[STREAMS]
    client = authenticate_client(request)
    task_id = path_task_id(request)
    state = await client_task(context, client, task_id)
    broadcaster = context.broadcaster
    # Listen before the first read, so no change can slip between the two.
    changes = broadcaster.listen(task_id) if broadcaster is not None else None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    settings.open_streams += 1
    loop = asyncio.get_running_loop()
    try:
        await response.prepare(request)
        document = await _current(context, task_id, status_document(state))
        sent = -1
        last_write = loop.time()
        while not settings.closing.is_set():
            if document["version"] > sent:
                await response.write(_status_event(document))
                sent, last_write = document["version"], loop.time()
            if document["status"] in TERMINAL or _gone(request):
                break
            if loop.time() - last_write >= settings.heartbeat_seconds:
                await response.write(b": keep-alive\n\n")
                last_write = loop.time()
            document = await _next_document(changes, settings.poll_seconds) or document
            if document["version"] <= sent:
                document = await _current(context, task_id, document)
    except ConnectionResetError:
        pass  # the client went away
    finally:
        settings.open_streams -= 1
        if broadcaster is not None and changes is not None:
            broadcaster.forget(task_id, changes)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _next_document(
    changes: asyncio.Queue[Any] | None, timeout: float
) -> dict[str, Any] | None:
    """The newest status the changes deliver within ``timeout``, if any."""
    if changes is None:
        await asyncio.sleep(timeout)
        return None
    try:
        newest = _document(await asyncio.wait_for(changes.get(), timeout))
    except TimeoutError:
        return None
    while not changes.empty():
        candidate = _document(changes.get_nowait())
        if candidate["version"] > newest["version"]:
            newest = candidate
    return newest
