"""The edge's connections: how long one may idle, how many may be open at once.

aiohttp's own keep-alive timer (``keepalive_timeout``) is started when a
connection opens and again after every response, is not moved by bytes that
arrive, and closes the connection if it is still waiting for a request's
headers when it fires. So the one setting bounds both an idle kept-alive
connection and a client trickling its headers. It stands still while a
handler runs; bodies are paced by the handlers (:mod:`http_edge.pace`).

aiohttp has no cap on open connections, so :class:`CappedSite` listens like
its ``TCPSite``/``SockSite`` but answers a connection over the cap with a
short 503 and closes it, before any parser or task exists for it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 84\r\n\r\n"
    b'{"error": {"code": "busy", "message": "too many open connections; retry shortly"}}\n'
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    # Headers must arrive within this many seconds of the connection opening or of
    # the previous response; a kept-alive connection idle this long is closed.
    idle_seconds: float = 5.0
    max_connections: int = 4096


class _MalformedRequestsAtInfo(logging.Filter):
    """aiohttp logs a request it cannot parse (a NUL in a header, a broken request line)
    as an ERROR with a traceback. It has answered 400 and nothing failed on our side, so
    anyone could fill the error log with them: they are logged as INFO, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            record.msg = f"{record.msg}: {record.exc_info[1]!r}"
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def edge_runner(app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> web.AppRunner:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequestsAtInfo) for f in server_log.filters):
        server_log.addFilter(_MalformedRequestsAtInfo())
    return web.AppRunner(app, keepalive_timeout=limits.idle_seconds, **kwargs)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()


class _Capped:
    """A protocol factory: aiohttp's server while under the cap, else a refusal."""

    def __init__(self, server: web.Server, cap: int) -> None:
        self._server = server
        self._cap = cap

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self._server.connections) >= self._cap:
            return _Refused()
        return self._server()


class CappedSite(web.BaseSite):
    """Listen on ``host``/``port`` or on a bound ``sock``, at most ``cap`` connections open."""

    __slots__ = ("_cap", "_host", "_port", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        cap: int,
        *,
        host: str | None = None,
        port: int = 0,
        sock: socket.socket | None = None,
        backlog: int = 2048,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._cap = cap
        self._host, self._port, self._sock = host, port, sock

    @property
    def name(self) -> str:
        if self._sock is not None:
            host, port = self._sock.getsockname()[:2]
            return f"http://{host}:{port}"
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.BaseProtocol] = _Capped(server, self._cap)
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                factory, self._host, self._port, backlog=self._backlog
            )
