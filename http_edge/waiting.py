"""Waiting instead of polling: an intake held until its task has an answer.

``wait=S`` (0..60 seconds) and ``until=first_response|approved`` on the three intake
endpoints hold the request until the task has what ``until`` names, or is terminal, and
then answer 200 with the status document; if S seconds pass first, the 202 as without
``wait``.

A held request costs no polling: it listens to the same per-process status feed as the
SSE streams (the projection's broadcaster on the embedded log, the status topic on Kafka),
and is woken by it. The only reads it makes of its own are one when it starts and a few
widening re-reads (0.5 s, 1 s, 2 s, ... at most every 8 s) as a safety net for a change
the feed could not deliver — an edge without processors in its process, or the moment an
idle status topic is being positioned. So a held request is a parked coroutine and a queue
(see ``taskledger bench answers`` for how many one edge holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from aggregates import TERMINAL, TaskState
from http_edge.context import EdgeContext
from http_edge.errors import ApiError
from http_edge.keys import context_of
from http_edge.lookup import current_state
from projections import status_document

MAX_WAIT_SECONDS: Final = 60.0
UNTIL: Final = ("first_response", "approved")
INTAKE_PATHS: Final = frozenset({"/api/v1/transcription", "/api/v1/tts", "/api/v1/summarization"})
_KEPT_HEADERS: Final = ("Location", "Idempotent-Replayed")
_FIRST_RECHECK: Final = 0.5
_LAST_RECHECK: Final = 8.0
# How long a held request waits for an idle Kafka status feed to find the topic's end.
_POSITIONING_SECONDS: Final = 5.0


class _Waiter:
    """One held request's place in the status feed: the newest change, and a future to wake.

    Lighter than a queue (no waiters' deques, no task per wait): a held request is a
    parked coroutine, this, and a timer.
    """

    __slots__ = ("change", "woken")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.change: Any = None
        self.woken: asyncio.Future[None] = loop.create_future()

    def put_nowait(self, change: Any, /) -> None:
        """Called by the feed (or with None at shutdown); an older change than the one
        kept is dropped."""
        if change is None:
            self.change = _RELEASED
        elif self.change is None or (
            self.change is not _RELEASED and _version(change) > _version(self.change)
        ):
            self.change = change
        if not self.woken.done():
            self.woken.set_result(None)

    def take(self) -> Any:
        change, self.change = self.change, None
        if self.woken.done():
            self.woken = self.woken.get_loop().create_future()
        return change


_RELEASED: Final = object()


def _version(change: TaskState | dict[str, Any]) -> int:
    return int(change["version"] if isinstance(change, dict) else change.version)


@dataclass
class Holds:
    """This process's held requests: how many, and a way to release them all at shutdown."""

    waiters: set[_Waiter] = field(default_factory=set)
    closing: bool = False

    @property
    def held(self) -> int:
        return len(self.waiters)

    def release_all(self) -> None:
        """At shutdown: every held request answers now, and none is held from here on."""
        self.closing = True
        for waiter in self.waiters:
            waiter.put_nowait(None)


HOLDS: Final = web.AppKey("holds", Holds)


def hold_of(request: web.Request) -> tuple[float, str]:
    """``wait`` (seconds) and ``until`` from the query; 400 for a value out of the contract."""
    raw_wait = request.query.get("wait")
    seconds = 0.0
    if raw_wait is not None:
        try:
            seconds = float(raw_wait)
        except ValueError:
            seconds = math.nan
        if not 0.0 <= seconds <= MAX_WAIT_SECONDS:  # NaN and inf fail here too
            raise ApiError(400, "invalid_query", "wait must be a number of seconds, 0 to 60")
    until = request.query.get("until", "first_response")
    if until not in UNTIL:
        raise ApiError(400, "invalid_query", "until must be first_response or approved")
    return seconds, until


def reached(document: dict[str, Any], until: str) -> bool:
    """Whether a status document has what ``until`` names, or will never have it."""
    if document["status"] in TERMINAL:
        return True
    if until == "first_response":
        return document.get("first_response") is not None
    return False


def _document(change: TaskState | dict[str, Any]) -> dict[str, Any]:
    return change if isinstance(change, dict) else status_document(change)


async def _reread(context: EdgeContext, task_id: str, known: dict[str, Any]) -> dict[str, Any]:
    state = await current_state(context, task_id)
    if state is None:
        return known
    document = status_document(state)
    return document if document["version"] > known["version"] else known


async def _woken(waiter: _Waiter, timeout: float) -> Any:
    """The newest change the feed delivered within ``timeout``, or None."""
    if waiter.change is None:
        timer = asyncio.get_running_loop().call_later(timeout, _wake_empty, waiter.woken)
        try:
            await waiter.woken
        finally:
            timer.cancel()
    return waiter.take()


def _wake_empty(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


async def watch(
    context: EdgeContext, holds: Holds, task_id: str, until: str, seconds: float
) -> dict[str, Any] | None:
    """The task's status document once it reached ``until`` (or a terminal status),
    or None if ``seconds`` passed first (or the server is shutting down)."""
    if holds.closing:
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    feed = context.broadcaster
    waiter = _Waiter(loop)
    if feed is not None:
        feed.attach(task_id, waiter)
    holds.waiters.add(waiter)
    try:
        positioned = context.feed_positioned
        if positioned is not None and not positioned.is_set():
            # Listen first, then read: a change after the feed found its place is heard.
            timeout = min(_POSITIONING_SECONDS, max(0.0, deadline - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(positioned.wait(), timeout)
        state = await current_state(context, task_id)
        if state is None:
            return None
        document = status_document(state)
        del state  # a held request keeps only what it answers with
        recheck = _FIRST_RECHECK
        while not reached(document, until):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            change = await _woken(waiter, min(remaining, recheck))
            if change is _RELEASED:
                return None  # shutting down
            if change is None:
                document = await _reread(context, task_id, document)
                recheck = min(recheck * 2, _LAST_RECHECK)
                continue
            candidate = _document(change)
            if candidate["version"] > document["version"]:
                document = candidate
        return document
    finally:
        holds.waiters.discard(waiter)
        if feed is not None:
            feed.detach(task_id, waiter)


def _task_id_of(response: web.StreamResponse) -> str | None:
    location = response.headers.get("Location", "")
    parts = location.split("/")
    # /api/v1/task/<id>/status
    if len(parts) == 6 and parts[3] == "task":
        return parts[4]
    return None


@web.middleware
async def hold_intakes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On the intake endpoints: check ``wait``/``until`` before anything is written, then
    hold the 202 until the task has its answer."""
    resource = request.match_info.route.resource
    if (
        request.method != "POST"
        or resource is None
        or resource.canonical not in INTAKE_PATHS
        or not ("wait" in request.query or "until" in request.query)
    ):
        return await handler(request)
    seconds, until = hold_of(request)
    response = await handler(request)
    task_id = _task_id_of(response)
    if response.status != 202 or seconds <= 0 or task_id is None:
        return response
    # Held, a request keeps only the 202's body and headers, not the response object.
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return response
    headers = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
    del response
    document = await watch(context_of(request), request.app[HOLDS], task_id, until, seconds)
    if document is None:
        return web.Response(body=body, status=202, content_type="application/json", headers=headers)
    return web.json_response(document, status=200, headers=headers)


async def release_holds(app: web.Application) -> None:
    """On shutdown: answer every held request now (its 202) instead of holding the server."""
    app[HOLDS].release_all()


def install_holds(app: web.Application) -> None:
    """Register the held intakes on ``app`` (before its routes are frozen)."""
    app[HOLDS] = Holds()
    app.middlewares.append(hold_intakes)
    app.on_shutdown.append(release_holds)
